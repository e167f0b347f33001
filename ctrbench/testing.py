"""The conformance kit: checks a component of any kind against the protocol the core relies on.

One check per plugin kind (``ctrbench.kinds``): ``check_dataset``, ``check_ctr_backbone``, ``check_plm``,
``check_method``, ``check_executor``; ``check_data`` checks a loaded `CTRData`. Call them from your own tests;
each raises ``AssertionError`` naming the check and the component when something is off, and returns ``None``
otherwise::

    from ctrbench.testing import check_ctr_backbone
    from mypkg.model import MyModel

    def test_my_model_conforms():
        check_ctr_backbone(MyModel, config={"num_layers": 2})

The checks run on CPU in seconds for small components and do not disturb the caller's global random state.
Sequence models (DIN, DIEN) are checked with ``with_history=True``: the fields then include a ``history``
sequence field sharing ``item_id`` and the batch carries ``sequences["history"]``. ``check_method`` and
``check_executor`` build what they run from the built-in plugins (a tiny ``dnn``, the tiny PLM of each family,
the ``synthetic`` dataset), so they need ctrbench's own plugins installed, as they are with ctrbench.
"""

from __future__ import annotations

import io
import math
import pickle
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from ctrbench.data.types import SPLITS, CTRData, Field
from ctrbench.errors import DataError
from ctrbench.models.base import Batch, FieldEmbedding
from ctrbench.protocols import FAMILIES, Dataset, Executor, Method, MethodNeeds, missing_members, plm_family
from ctrbench.protocols import runs_elsewhere as _runs_elsewhere

__all__ = ["check_ctr_backbone", "check_data", "check_dataset", "check_executor", "check_method", "check_plm",
           "synthetic_batch", "synthetic_data", "synthetic_fields"]

BATCH_SIZE = 32
NUM_EXTRA = 2
HISTORY_LENGTH = 6
Fail = Callable[[str, str], NoReturn]


def synthetic_fields(with_history: bool = False) -> list[Field]:
    """Five categorical fields with vocabularies of 3..20 rows (index 0 = unknown included).

    ``with_history``: a sixth, sequence field ``history`` (the user's recent items) sharing ``item_id``.
    """
    fields = [
        Field("user_id", "categorical", 20, "user ID"),
        Field("item_id", "categorical", 17, "item ID"),
        Field("gender", "categorical", 3),
        Field("age", "categorical", 7),
        Field("genre", "categorical", 11),
    ]
    if with_history:
        fields.append(Field("history", "sequence", 17, "recent items", shares="item_id"))
    return fields


def synthetic_batch(fields: list[Field], batch_size: int = BATCH_SIZE, seed: int = 0,
                    history_length: int = HISTORY_LENGTH) -> Batch:
    """A random batch over ``fields`` (categorical indices may be 0, the unknown index).

    Each sequence field gets ``sequences[name]``: int64[B, history_length] of valid items (1..vocab-1)
    followed by 0 padding, with random lengths; row 0 is full and row 1 is empty (all padding).
    """
    g = torch.Generator().manual_seed(seed)
    categorical = [f for f in fields if f.kind == "categorical"]
    x = torch.stack([torch.randint(0, f.vocab_size, (batch_size,), generator=g) for f in categorical], dim=1)
    y = torch.randint(0, 2, (batch_size,), generator=g).float()
    sequences = {}
    for f in fields:
        if f.kind != "sequence":
            continue
        items = torch.randint(1, max(2, f.vocab_size), (batch_size, history_length), generator=g)
        lengths = torch.randint(0, history_length + 1, (batch_size,), generator=g)
        lengths[0] = history_length
        if batch_size > 1:
            lengths[1] = 0
        valid = torch.arange(history_length) < lengths.unsqueeze(1)
        sequences[f.name] = torch.where(valid, items, torch.zeros_like(items))
    return Batch(x=x, y=y, idx=torch.arange(batch_size), sequences=sequences)


def _describe(factory: Callable[..., Any], config: dict[str, Any]) -> str:
    name = getattr(factory, "__qualname__", None) or repr(factory)
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in config.items())})"


def check_ctr_backbone(factory: Callable[..., Any], *, config: dict[str, Any] | None = None, embed_dim: int = 8,
                       seed: int = 0, with_history: bool = False) -> None:
    """Check a CTR backbone factory ``factory(fields, *, embed_dim, num_extra_fields=0, **config)``.

    Checks, in order: (1) interface and shapes of ``embed``/``interact``/``forward``; (2) determinism
    under ``torch.manual_seed(seed)`` and across eval-mode forward passes; (3) gradient flow to every
    trainable parameter and to the embedding rows the batch uses; (4) a ``state_dict`` save/load round
    trip; (5) ``extra`` field injection with ``num_extra_fields=2``; (6) per-field table access via
    ``model.embedding.table(name)``; with ``with_history=True`` also (7) the output depends on the
    history when the model adds pooled vectors to ``E``.

    ``with_history``: add a ``history`` sequence field (sharing ``item_id``) to the fields and
    ``sequences["history"]`` to the batch, for sequence models. ``config`` holds the model's own keys;
    ``embed_dim`` is the ``embed_dim=`` argument (a ``TypeError`` says so when ``config`` sets it), and
    ``fields``/``num_extra_fields`` are the kit's to set. ``embed`` must then return the F
    categorical field embeddings first, followed by any vectors the model derives from sequences; their
    number is ``model.num_inputs - model.num_extra_fields - F`` (0 for models that ignore sequences).
    """
    config = dict(config or {})
    if "embed_dim" in config:
        raise TypeError(f"check_ctr_backbone: config sets 'embed_dim' ({config['embed_dim']!r}), which the kit passes "
                        f"to the factory itself; use check_ctr_backbone(..., embed_dim={config['embed_dim']!r}) "
                        "instead")
    for key in ("fields", "num_extra_fields"):
        if key in config:
            raise TypeError(f"check_ctr_backbone: config sets '{key}', which the kit passes to the factory itself "
                            "(synthetic fields; 0, then 2 extra fields); remove it from config")
    who = _describe(factory, config)
    fields = synthetic_fields(with_history)
    batch = synthetic_batch(fields, seed=seed)

    def fail(check: str, msg: str) -> NoReturn:
        raise AssertionError(f"check_ctr_backbone: {who}: [{check}] {msg}")

    def build(build_seed: int, num_extra_fields: int = 0) -> Any:
        torch.manual_seed(build_seed)
        return factory(fields, embed_dim=embed_dim, num_extra_fields=num_extra_fields, **config)

    checks: list[tuple[str, Callable[[], None]]] = [
        ("interface", lambda: _check_interface(build(seed), batch, fields, fail)),
        ("determinism", lambda: _check_determinism(build(seed), build(seed), batch, fail)),
        ("gradients", lambda: _check_gradients(build(seed), batch, fail)),
        ("save/load", lambda: _check_save_load(build(seed), build(seed + 1), batch, fail)),
        ("extra fields", lambda: _check_extra(build(seed, NUM_EXTRA), batch, fail)),
        ("tables", lambda: _check_tables(build(seed), batch, fields, fail)),
    ]
    if with_history:
        checks.append(("history", lambda: _check_history(build(seed), batch, fields, fail)))
    with torch.random.fork_rng(devices=[]):
        for name, check in checks:
            try:
                check()
            except AssertionError:
                raise
            except Exception as exc:
                raise AssertionError(f"check_ctr_backbone: {who}: [{name}] raised {type(exc).__name__}: {exc}") from exc


def _check_interface(model: Any, batch: Batch, fields: list[Field], fail: Fail) -> None:
    if not isinstance(model, torch.nn.Module):
        fail("interface", f"the factory returned {type(model).__name__}, not a torch.nn.Module")
    for attr in ("embed", "interact", "head", "hidden_dim", "embed_dim", "embedding"):
        if not hasattr(model, attr):
            fail("interface", f"the model has no attribute '{attr}'")
    if not isinstance(model.embedding, FieldEmbedding):
        fail("interface", f"model.embedding is {type(model.embedding).__name__}, not a FieldEmbedding")
    if not isinstance(model.hidden_dim, int) or not isinstance(model.embed_dim, int):
        fail("interface", f"hidden_dim and embed_dim must be ints, got {model.hidden_dim!r}, {model.embed_dim!r}")
    B, F, d = len(batch), len(_categorical(fields)), model.embed_dim
    derived = _derived_inputs(model, F)
    if derived < 0:
        fail("interface", f"model.num_inputs - model.num_extra_fields = {model.num_inputs - model.num_extra_fields} "
                          f"is less than the {F} categorical fields")
    model.eval()
    with torch.no_grad():
        E = model.embed(batch)
        if tuple(E.shape) != (B, F + derived, d):
            what = "[B, F, embed_dim]" if not derived else f"[B, F + {derived} pooled, embed_dim]"
            fail("shapes", f"embed(batch) has shape {tuple(E.shape)}, expected {(B, F + derived, d)} = {what}")
        q = model.interact(E)
        if tuple(q.shape) != (B, model.hidden_dim):
            fail("shapes", f"interact(E) has shape {tuple(q.shape)}, expected {(B, model.hidden_dim)} "
                           "= [B, hidden_dim]")
        logit = model(batch)
    if tuple(logit.shape) != (B,):
        fail("shapes", f"forward(batch) has shape {tuple(logit.shape)}, expected {(B,)} = [B]")
    if not torch.isfinite(logit).all():
        fail("shapes", "forward(batch) returned non-finite logits")


def _check_determinism(m1: Any, m2: Any, batch: Batch, fail: Fail) -> None:
    s1, s2 = m1.state_dict(), m2.state_dict()
    if s1.keys() != s2.keys():
        fail("determinism", "two models built with the same seed have different state_dict keys")
    differing = [k for k in s1 if not torch.equal(s1[k], s2[k])]
    if differing:
        fail("determinism", f"two models built under the same seed differ in {differing[:5]}")
    m1.eval()
    m2.eval()
    with torch.no_grad():
        a, b, c = m1(batch), m1(batch), m2(batch)
    if not torch.equal(a, b):
        fail("determinism", "two eval-mode forward passes on the same batch differ "
                            f"(max |diff| {(a - b).abs().max().item():.3g})")
    if not torch.equal(a, c):
        fail("determinism", "two models built under the same seed give different outputs "
                            f"(max |diff| {(a - c).abs().max().item():.3g})")


def _check_gradients(model: Any, batch: Batch, fail: Fail) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    model(batch).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if missing:
        fail("gradients", f"parameters without a gradient after backward of the mean logit: {missing[:10]}")
    bad = [n for n, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p.grad).all()]
    if bad:
        fail("gradients", f"parameters with non-finite gradients: {bad[:10]}")
    emb = model.embedding
    if emb.weight.grad is None:
        fail("gradients", "the embedding table got no gradient")
    rows = (batch.x + emb.offsets).reshape(-1).unique()
    dead = rows[emb.weight.grad[rows].abs().sum(dim=-1) == 0]
    if len(dead):
        names = []
        for r in dead.tolist()[:5]:
            j = int((emb.offsets <= r).nonzero().max())
            names.append(f"{emb.field_names[j]}[{r - int(emb.offsets[j])}]")
        fail("gradients", f"{len(dead)} embedding rows used by the batch got a zero gradient, e.g. {names}")


def _check_save_load(model: Any, fresh: Any, batch: Batch, fail: Fail) -> None:
    model.train()  # one SGD step so the saved state is not the initial one (and BatchNorm stats move)
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch.y)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    try:
        fresh.load_state_dict(torch.load(buf, weights_only=True))
    except Exception as exc:
        fail("save/load", f"load_state_dict into a freshly built model raised {type(exc).__name__}: {exc}")
    model.eval()
    fresh.eval()
    with torch.no_grad():
        a, b = model(batch), fresh(batch)
    if not torch.equal(a, b):
        fail("save/load", "a model loaded from the saved state_dict gives different outputs "
                          f"(max |diff| {(a - b).abs().max().item():.3g}); is some state not a parameter or buffer?")


def _check_extra(model: Any, batch: Batch, fail: Fail) -> None:
    B, k, d = len(batch), NUM_EXTRA, model.embed_dim
    g = torch.Generator().manual_seed(1)
    extra1, extra2 = torch.randn(B, k, d, generator=g), torch.randn(B, k, d, generator=g)
    model.eval()
    with torch.no_grad():
        a, b = model(batch, extra1), model(batch, extra2)
        q = model.interact(torch.cat([model.embed(batch), extra1], dim=1))
    if tuple(a.shape) != (B,) or not torch.isfinite(a).all():
        fail("extra fields", f"forward(batch, extra) gave shape {tuple(a.shape)} or non-finite values")
    if tuple(q.shape) != (B, model.hidden_dim):
        fail("extra fields", f"interact on E with extra fields has shape {tuple(q.shape)}, "
                             f"expected {(B, model.hidden_dim)}")
    if torch.equal(a, b):
        fail("extra fields", "the output does not change when `extra` changes: extra fields are ignored")


def _categorical(fields: list[Field]) -> list[Field]:
    return [f for f in fields if f.kind == "categorical"]


def _derived_inputs(model: Any, num_categorical: int) -> int:
    """How many vectors ``embed`` appends after the field embeddings (pooled sequences; 0 for most models)."""
    num_inputs = getattr(model, "num_inputs", None)
    if not isinstance(num_inputs, int):
        return 0
    return num_inputs - int(getattr(model, "num_extra_fields", 0)) - num_categorical


def _check_history(model: Any, batch: Batch, fields: list[Field], fail: Fail) -> None:
    """A model that appends pooled history vectors to E must react to the history."""
    if _derived_inputs(model, len(_categorical(fields))) <= 0:
        return
    other = {name: seq.roll(1, dims=0) for name, seq in batch.sequences.items()}  # each row another history
    model.eval()
    with torch.no_grad():
        a = model(batch)
        b = model(Batch(x=batch.x, y=batch.y, idx=batch.idx, sequences=other))
    if torch.equal(a, b):
        fail("history", "the output does not change when the history sequences change")


def _check_tables(model: Any, batch: Batch, fields: list[Field], fail: Fail) -> None:
    model.eval()
    with torch.no_grad():
        E = model.embed(batch)
        for j, f in enumerate(_categorical(fields)):
            table = model.embedding.table(f.name)
            if tuple(table.shape) != (f.vocab_size, model.embed_dim):
                fail("tables", f"table('{f.name}') has shape {tuple(table.shape)}, "
                               f"expected {(f.vocab_size, model.embed_dim)} = [vocab_size, embed_dim]")
            if not torch.equal(table[batch.x[:, j]], E[:, j]):
                fail("tables", f"table('{f.name}')[ids] differs from the embeddings embed(batch) returns "
                               f"for field '{f.name}'")


def check_data(data: CTRData) -> None:
    """Check the invariants every method relies on; raise ``AssertionError`` naming the dataset and field.

    X is int64 within [0, vocab_size) per field; y is in {0, 1}; each split is non-empty, sorted, unique,
    within [0, N) and disjoint from the others; ``vocab[name]`` has ``vocab_size`` entries; sequences are
    int64 [N, L] within their field's vocabulary; ``item_text`` has one string per item index, ``""`` at 0.
    (``check_dataset(data)`` does the same.)
    """
    if not isinstance(data, CTRData):
        raise AssertionError(f"check_data: expected a CTRData, got {type(data).__name__}")

    def fail(msg: str) -> NoReturn:
        raise AssertionError(f"check_dataset: dataset '{data.name}': {msg}")

    n = data.num_samples
    if n == 0:
        fail("has no rows")
    names = [f.name for f in data.fields] + [f.name for f in data.sequence_fields]
    if len(set(names)) != len(names):
        fail(f"field names are not unique: {names}")
    for f in data.fields:
        if f.kind != "categorical":
            fail(f"field '{f.name}' in `fields` has kind '{f.kind}'; X holds categorical fields only")
        if f.vocab_size < 1:
            fail(f"field '{f.name}' has vocab_size {f.vocab_size}")

    if data.X.dtype != np.int64:
        fail(f"X has dtype {data.X.dtype}, expected int64")
    vocab_sizes = np.array([f.vocab_size for f in data.fields], dtype=np.int64)
    lo, hi = _column_min_max(data.X)
    for j, f in enumerate(data.fields):
        if lo[j] < 0 or hi[j] >= vocab_sizes[j]:
            fail(f"X column '{f.name}' has values in [{lo[j]}, {hi[j]}], outside [0, {f.vocab_size})")

    y = np.asarray(data.y)
    if not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        fail(f"y must be 0 or 1, found values such as {bad.tolist()}")

    for s in SPLITS:
        idx = np.asarray(data.splits[s])
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            fail(f"split '{s}' must be a 1-D integer array, got dtype {idx.dtype} and shape {idx.shape}")
        if len(idx) == 0:
            fail(f"split '{s}' is empty")
        if idx[0] < 0 or idx[-1] >= n or (len(idx) > 1 and not (np.diff(idx) > 0).all()):
            fail(f"split '{s}' must be strictly increasing row indices within [0, {n})")
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            common = np.intersect1d(data.splits[a], data.splits[b], assume_unique=True)
            if len(common):
                fail(f"splits '{a}' and '{b}' share {len(common)} rows, e.g. {common[:5].tolist()}")

    by_name = {f.name: f for f in [*data.fields, *data.sequence_fields]}
    for name, words in data.vocab.items():
        if name not in by_name:
            fail(f"vocab has an entry for '{name}', which is not a field")
        if len(words) != by_name[name].vocab_size:
            fail(f"vocab['{name}'] has {len(words)} entries, expected vocab_size {by_name[name].vocab_size}")

    for name, texts in data.item_text.items():  # checked again: a plugin may set item_text after construction
        if name in by_name or name == "history":
            fail(f"item_text '{name}' shares its name with a field")
        n_items = by_name[data.item_field].vocab_size if data.item_field in by_name else -1
        if len(texts) != n_items:
            fail(f"item_text '{name}' has {len(texts)} entries, expected one per index of '{data.item_field}' "
                 f"({n_items})")
        if not all(isinstance(t, str) for t in texts) or (texts and texts[0] != ""):
            fail(f"item_text '{name}' must be strings, with \"\" for index 0 (the unknown item)")

    seq_fields = {f.name: f for f in data.sequence_fields}
    categorical = {f.name: f for f in data.fields}
    for f in data.sequence_fields:
        if f.kind != "sequence":
            fail(f"field '{f.name}' in `sequence_fields` has kind '{f.kind}', expected 'sequence'")
        if f.shares:
            if f.shares not in categorical:
                fail(f"sequence field '{f.name}' shares '{f.shares}', which is not a categorical field")
            if f.vocab_size != categorical[f.shares].vocab_size:
                fail(f"sequence field '{f.name}' has vocab_size {f.vocab_size} but shares '{f.shares}', "
                     f"whose vocab_size is {categorical[f.shares].vocab_size}")
    for name in seq_fields.keys() - data.sequences.keys():
        fail(f"sequence field '{name}' has no array in `sequences`")
    for name, seq in data.sequences.items():
        if name not in seq_fields:
            fail(f"sequences['{name}'] has no matching entry in `sequence_fields`")
        if seq.ndim != 2 or seq.shape[0] != n:
            fail(f"sequences['{name}'] has shape {seq.shape}, expected ({n}, L)")
        if seq.dtype != np.int64:
            fail(f"sequences['{name}'] has dtype {seq.dtype}, expected int64")
        lo, hi = _min_max(seq)
        if lo < 0 or hi >= seq_fields[name].vocab_size:
            where = f" (the index space of '{seq_fields[name].shares}')" if seq_fields[name].shares else ""
            fail(f"sequences['{name}'] has values in [{lo}, {hi}], outside [0, {seq_fields[name].vocab_size})"
                 f"{where}")


def _min_max(a: np.ndarray) -> tuple[int, int]:
    """Min and max of a 2-D array (0, 0 when empty), read in row chunks like ``_column_min_max``."""
    if a.size == 0:
        return 0, 0
    lo, hi = _column_min_max(a)
    return int(lo.min()), int(hi.max())


def _column_min_max(X: np.ndarray, chunk: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Per-column min and max, read in row chunks so a memory-mapped X is never loaded whole."""
    if len(X) == 0:
        return np.zeros(X.shape[1], np.int64), np.zeros(X.shape[1], np.int64)
    lo = np.full(X.shape[1], np.iinfo(np.int64).max)
    hi = np.full(X.shape[1], np.iinfo(np.int64).min)
    for start in range(0, len(X), chunk):
        part = np.asarray(X[start:start + chunk])
        lo = np.minimum(lo, part.min(axis=0))
        hi = np.maximum(hi, part.max(axis=0))
    return lo, hi


# -- datasets: the plugin ---------------------------------------------------------------------------------

def check_dataset(dataset: Callable[..., Any] | CTRData, *, config: dict[str, Any] | None = None,
                  cache_dir: str | Path | None = None, missing_files: bool = False, name: str = "") -> None:
    """Check a dataset factory ``factory(**config) -> Dataset`` (``ctrbench.protocols.Dataset``), or, given a
    loaded `CTRData`, its invariants (`check_data`).

    Checks, in order: (1) **interface**: the factory builds an object with ``load`` and ``fingerprint``;
    (2) **fingerprint**: a non-empty string, equal for two plugins built from the same config;
    (3) **load**: ``load(cache_dir)`` gives a `CTRData` that passes `check_data`, with a fingerprint and both
    classes in every split (AUC needs them); (4) **cache**: a second plugin loads the same arrays and fingerprint.

    ``missing_files=True`` is the check for a dataset whose raw files a test cannot fetch (downloads, files
    behind a request form): the plugin is built with ``source`` set to an empty directory (so nothing is
    downloaded), and ``load`` must raise a one-line `DataError` that names the dataset (``name``, else the
    plugin's ``name`` attribute). ``cache_dir`` defaults to a temporary directory.
    """
    if isinstance(dataset, CTRData):
        check_data(dataset)
        return
    factory, config = dataset, dict(config or {})
    who = _describe(factory, config)

    def fail(check: str, msg: str) -> NoReturn:
        raise AssertionError(f"check_dataset: {who}: [{check}] {msg}")

    with _directory(cache_dir) as cache, torch.random.fork_rng(devices=[]):
        if missing_files:
            _check_missing_files(factory, config, cache, name, fail)
            return
        plugin = _run("interface", fail, lambda: factory(**config))
        _check_members(plugin, Dataset, "interface", fail)
        fingerprint = _run("fingerprint", fail, plugin.fingerprint)
        if not isinstance(fingerprint, str) or not fingerprint:
            fail("fingerprint", f"fingerprint() returned {fingerprint!r}, expected a non-empty string")
        again = _run("fingerprint", fail, lambda: factory(**config).fingerprint())
        if again != fingerprint:
            fail("fingerprint", f"two plugins built from the same config give {fingerprint!r} and {again!r}")
        data = _run("load", fail, lambda: plugin.load(cache))
        if not isinstance(data, CTRData):
            fail("load", f"load() returned {type(data).__name__}, not a CTRData")
        try:
            check_data(data)
        except AssertionError as exc:
            fail("load", str(exc))
        if not data.fingerprint:
            fail("load", "the loaded data has no fingerprint (ctrbench.data.cache.cached_dataset sets it)")
        for split in SPLITS:
            classes = np.unique(np.asarray(data.y)[np.asarray(data.splits[split])])
            if len(classes) < 2:
                fail("load", f"split '{split}' has only label(s) {classes.tolist()}; AUC needs both classes")
        reloaded = _run("cache", fail, lambda: factory(**config).load(cache))
        if reloaded.fingerprint != data.fingerprint:
            fail("cache", f"a second load gives fingerprint {reloaded.fingerprint!r}, the first {data.fingerprint!r}")
        same = (np.array_equal(np.asarray(reloaded.X), np.asarray(data.X))
                and np.array_equal(np.asarray(reloaded.y), np.asarray(data.y))
                and all(np.array_equal(reloaded.splits[s], data.splits[s]) for s in SPLITS))
        if not same:
            fail("cache", "a second load from the same cache gives different X, y or splits")


def _check_missing_files(factory: Callable[..., Any], config: dict[str, Any], cache: Path, name: str,
                         fail: Callable[[str, str], NoReturn]) -> None:
    empty = cache / "no-raw-files-here"
    empty.mkdir(parents=True, exist_ok=True)
    plugin = _run("interface", fail, lambda: factory(**{**config, "source": str(empty)}))
    _check_members(plugin, Dataset, "interface", fail)
    named = name or str(getattr(plugin, "name", ""))
    try:
        plugin.load(cache)
    except DataError as exc:
        message = str(exc)
        if "\n" in message.strip() or not message:
            fail("missing files", f"the DataError is not one line: {message!r}")
        if named and named not in message:
            fail("missing files", f"the DataError does not name dataset '{named}': {message!r}")
        return
    except Exception as exc:
        fail("missing files", f"load() without raw files raised {type(exc).__name__}: {exc}; expected a DataError")
    fail("missing files", f"load() with source={str(empty)!r} (an empty directory) raised nothing")


# -- PLMs -------------------------------------------------------------------------------------------------

PROMPT_TEXTS = ("the user liked the movie comedy", "user 25 is a student . title toy story", "yes")


def check_plm(factory: Callable[..., Any], *, config: dict[str, Any] | None = None, family: str | None = None,
              seed: int = 0) -> None:
    """Check a PLM factory ``factory(**config)`` against its family's protocol (``ctrbench.protocols``).

    ``family``: what the registration's ``family=`` metadata says (the object's ``family`` must agree).
    Checks: (1) **interface**: a known ``family`` and every member of its protocol; (2) **tokenize**: int64
    ``[B, T]`` ids and mask, ``T <= max_length``; (3) **determinism**: two PLMs built from the same config give
    the same outputs, and so do two eval passes. A ``masked_lm`` then gets (4) **shapes** of ``encode``,
    ``mlm_logits`` (equal to ``mlm_head(encode(...))``) and ``pooled``, and (5) **prompts**: layer-wise and
    first-layer prompts of ``prompt_shape(K, mode)`` keep the shapes, change the output and get gradients. A
    ``causal_lm`` / ``seq2seq_lm`` gets (4) **answers**: ``logits [B, 2]`` float32, ``click``/``prompt``
    ``[B, hidden_size]``, ``margin``, each prompt scored as if alone (padding changes nothing); (5) **lora**:
    ``add_lora`` returns the trainable count, freezes the base weights, leaves the output unchanged and
    gradients reach the adapters; (6) **gradient checkpointing**: training still runs with it on.
    """
    config = dict(config or {})
    who = _describe(factory, config)

    def fail(check: str, msg: str) -> NoReturn:
        raise AssertionError(f"check_plm: {who}: [{check}] {msg}")

    with torch.random.fork_rng(devices=[]):
        plm = _run("interface", fail, lambda: factory(**config))
        declared = getattr(plm, "family", None)
        if family is not None and declared != family:
            fail("interface", f"the registration says family={family!r}, the object's family is {declared!r}")
        try:
            fam = plm_family(str(declared))
        except Exception:
            fail("interface", f"family {declared!r} is not one of {', '.join(f.name for f in FAMILIES)}")
        _check_members(plm, fam.protocol, "interface", fail)
        if not isinstance(plm, torch.nn.Module):
            fail("interface", f"the factory returned {type(plm).__name__}, not a torch.nn.Module")
        plm.eval()
        ids, mask = _run("tokenize", fail, lambda: plm.tokenize(list(PROMPT_TEXTS), max_length=12))
        for what, t in (("input_ids", ids), ("attention_mask", mask)):
            if not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.dim() != 2 or len(t) != 3:
                fail("tokenize", f"{what} must be int64 [B=3, T], got "
                                 f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        if ids.shape != mask.shape or ids.shape[1] > 12 or (mask.sum(1) == 0).any():
            fail("tokenize", f"ids {tuple(ids.shape)} and mask {tuple(mask.shape)}: expected equal shapes, T <= 12 "
                             "and at least one real token per text")
        checks = _masked_lm_checks if fam.name == "masked_lm" else _yes_no_checks
        checks(plm, lambda: factory(**config), ids, mask, seed, fail)


def _masked_lm_checks(plm: Any, build: Callable[[], Any], ids: torch.Tensor, mask: torch.Tensor, seed: int,
                      fail: Callable[[str, str], NoReturn]) -> None:
    B, T, H = ids.shape[0], ids.shape[1], plm.hidden_size
    with torch.no_grad():
        hidden = _run("shapes", fail, lambda: plm.encode(ids, mask))
        _expect_shape("shapes", "encode(ids, mask)", hidden, (B, T, H), fail)
        logits = plm.mlm_logits(ids, mask)
        _expect_shape("shapes", "mlm_logits(ids, mask)", logits, (B, T, plm.vocab_size), fail)
        if not torch.allclose(plm.mlm_head(hidden).float(), logits.float(), atol=_tol(logits)):
            fail("shapes", "mlm_head(encode(x)) differs from mlm_logits(x)")
        _expect_shape("shapes", "pooled(hidden, mask)", plm.pooled(hidden, mask), (B, H), fail)
        again = build().eval()
        if not torch.equal(plm.encode(ids, mask), hidden) or not torch.equal(again.encode(ids, mask), hidden):
            fail("determinism", "encode differs between two eval passes or two PLMs built from the same config")
    g = torch.Generator().manual_seed(seed)
    for mode in ("layerwise", "first_layer"):
        shape = tuple(plm.prompt_shape(2, mode))
        prompts = (0.5 * torch.randn(B, *shape, generator=g)).to(hidden.dtype).requires_grad_(True)
        out = _run("prompts", fail, lambda prompts=prompts, mode=mode: plm.encode(ids, mask, prompts, mode))
        _expect_shape("prompts", f"encode with {mode} prompts {tuple(prompts.shape)}", out, (B, T, H), fail)
        if torch.allclose(out.detach(), hidden, atol=1e-6):
            fail("prompts", f"{mode} prompts do not change the output")
        out.float().pow(2).mean().backward()
        if prompts.grad is None or not torch.isfinite(prompts.grad).all() or prompts.grad.abs().sum() == 0:
            fail("prompts", f"{mode} prompts get no finite, non-zero gradient")


def _yes_no_checks(plm: Any, build: Callable[[], Any], ids: torch.Tensor, mask: torch.Tensor, seed: int,
                   fail: Callable[[str, str], NoReturn]) -> None:
    B, H = ids.shape[0], plm.hidden_size
    with torch.no_grad():
        out = _run("answers", fail, lambda: plm(ids, mask))
        for attr in ("logits", "click", "prompt", "margin"):
            if not hasattr(out, attr):
                fail("answers", f"the output {type(out).__name__} has no '{attr}'")
        _expect_shape("answers", "logits", out.logits, (B, 2), fail)
        if out.logits.dtype != torch.float32:
            fail("answers", f"logits must be float32, got {out.logits.dtype}")
        _expect_shape("answers", "click", out.click, (B, H), fail)
        _expect_shape("answers", "prompt", out.prompt, (B, H), fail)
        if not torch.allclose(out.margin, out.logits[:, 1] - out.logits[:, 0]):
            fail("answers", "margin is not logits[:, 1] - logits[:, 0] (l_yes - l_no)")
        tol = _tol(out.click)
        for i, text in enumerate(PROMPT_TEXTS):  # alone, with no padding: the same answer as in the batch
            alone = plm(*plm.tokenize([text], max_length=12))
            if not torch.allclose(alone.logits[0], out.logits[i], atol=tol, rtol=tol):
                fail("answers", f"prompt {i} scores {alone.logits[0].tolist()} alone and {out.logits[i].tolist()} in "
                                "a padded batch: padding must not change a prompt's answer")
        again = build().eval()
        if not torch.equal(plm(ids, mask).logits, out.logits) or not torch.equal(again(ids, mask).logits, out.logits):
            fail("determinism", "logits differ between two eval passes or two PLMs built from the same config")
    total = sum(p.numel() for p in plm.parameters())
    count = _run("lora", fail, lambda: plm.add_lora(r=2, alpha=4, dropout=0.0, seed=seed))
    trainable = list(plm.trainable_parameters())
    if count != sum(p.numel() for p in trainable) or not 0 < count < sum(p.numel() for p in plm.parameters()):
        fail("lora", f"add_lora returned {count}; trainable_parameters() hold {sum(p.numel() for p in trainable)} "
                     f"of {total} base parameters (expected the adapters only, base weights frozen)")
    plm.eval()
    with torch.no_grad():
        if not torch.allclose(plm(ids, mask).logits, out.logits, atol=tol, rtol=tol):
            fail("lora", "the output changes when LoRA is added (adapters must start as a no-op)")
    for check in ("lora", "gradient checkpointing"):
        if check == "gradient checkpointing":
            _run(check, fail, plm.enable_gradient_checkpointing)
        plm.train()
        plm.zero_grad(set_to_none=True)
        _run(check, fail, lambda: plm(ids, mask).margin.float().sum().backward())
        grads = [p.grad for p in plm.trainable_parameters()]
        if any(g is None or not torch.isfinite(g).all() for g in grads) or all(g.abs().sum() == 0 for g in grads):
            fail(check, "the LoRA adapters get no finite, non-zero gradient from the answer margin")
    plm.eval()


def _tol(t: torch.Tensor) -> float:
    return 1e-4 if t.dtype in (torch.float32, torch.float64) else 5e-2


def _expect_shape(check: str, what: str, t: Any, shape: tuple[int, ...],
                  fail: Callable[[str, str], NoReturn]) -> None:
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
        fail(check, f"{what} has shape {tuple(getattr(t, 'shape', ()))}, expected {shape}")
    if not torch.isfinite(t).all():
        fail(check, f"{what} has non-finite values")


# -- methods ----------------------------------------------------------------------------------------------

# The CTR backbone the kit builds methods with, from the built-in plugins.
TINY_CTR = ("dnn", {"embed_dim": 4, "hidden_units": [8]})
TINY_TRAIN = {"epochs": 1, "batch_size": 64, "max_samples": 64}


def synthetic_data(num_samples: int = 300, seed: int = 0, history_length: int = 4) -> CTRData:
    """A small `CTRData` with text: ``user_id``, ``item_id``, ``genre`` (one per item: item text), ``age``;
    labels planted from user × item factors; a temporal 8:1:1 split with both classes in every split; the
    user history (``sequences["history"]``, sharing ``item_id``) when ``history_length`` > 0."""
    from ctrbench.data.history import user_history

    rng = np.random.default_rng(seed)
    n_users, n_items, genres, ages = 20, 15, ["comedy", "drama", "action", "horror", "romance"], 4
    user = rng.integers(1, n_users + 1, num_samples)
    item = rng.integers(1, n_items + 1, num_samples)
    item_genre = np.concatenate([[0], rng.integers(1, len(genres) + 1, n_items)])
    age = rng.integers(1, ages + 1, num_samples)
    uf, itf = rng.normal(size=(n_users + 1, 3)), rng.normal(size=(n_items + 1, 3))
    y = (rng.random(num_samples) < 1 / (1 + np.exp(-2 * (uf[user] * itf[item]).sum(1)))).astype(np.float32)
    a, b = int(num_samples * 0.8), int(num_samples * 0.9)
    for start in (0, a, b):  # both classes in every split
        y[start], y[start + 1] = 0.0, 1.0
    X = np.stack([user, item, item_genre[item], age], axis=1).astype(np.int64)
    fields = [Field("user_id", "categorical", n_users + 1, "user"), Field("item_id", "categorical", n_items + 1,
              "movie"), Field("genre", "categorical", len(genres) + 1, "genres"), Field("age", "categorical", ages + 1,
              "age")]
    vocab = {"user_id": ["unknown"] + [f"user {i}" for i in range(1, n_users + 1)],
             "item_id": ["unknown"] + [f"movie {i}" for i in range(1, n_items + 1)],
             "genre": ["unknown", *genres], "age": ["unknown"] + [str(18 + 10 * i) for i in range(1, ages + 1)]}
    ts = np.arange(num_samples, dtype=np.int64)
    sequences, sequence_fields = {}, []
    if history_length:
        sequences["history"] = user_history(user, ts, y, item, history_length)
        sequence_fields = [Field("history", "sequence", n_items + 1, "recently liked", shares="item_id")]
    return CTRData(name="kit-synthetic", fields=fields, X=X, y=y, ts=ts, user=user.astype(np.int64),
                   item=item.astype(np.int64),
                   splits={"train": np.arange(a), "valid": np.arange(a, b), "test": np.arange(b, num_samples)},
                   vocab=vocab, sequences=sequences, sequence_fields=sequence_fields,
                   fingerprint=f"kit-synthetic-{num_samples}-{seed}-{history_length}")


def check_method(factory: Callable[..., Any], *, config: dict[str, Any] | None = None,
                 needs: MethodNeeds | Mapping[str, Any] | None = None, family: str | None = None,
                 plugins: Any = None, name: str = "method", seed: int = 0, determinism: bool = True) -> None:
    """Run a method factory ``factory(**config) -> Method`` once on `synthetic_data` and check its predictions.

    The run gets what ``needs`` (its registration's ``needs=``) declares: a tiny ``dnn`` when it builds a CTR
    backbone (or declares nothing), and, when it uses a PLM, the tiny PLM of ``family`` (default: the first
    family it accepts; ``protocols.FAMILIES`` names one per family: ``random-bert``, ``random-llama``,
    ``random-t5``). Training is one epoch on 64 rows. ``plugins`` default to ``load_plugins()``.

    Checks: (1) **interface**: the factory builds an object with ``run``; (2) **predictions**: ``valid`` and
    ``test`` have one probability per row of their split, finite and in [0, 1] on the scored rows;
    ``n_params`` is a positive int, times are finite and non-negative, ``extra`` holds floats; (3)
    **determinism** (unless ``determinism=False``): a second run under the same seed, reusing the first run's
    cached stages, gives the same predictions.
    """
    from ctrbench.context import RunContext
    from ctrbench.plugins import load_plugins
    from ctrbench.spec import ComponentRef, RunSpec
    from ctrbench.trainer import NullReporter, TrainConfig, Trainer, eval_positions

    config = dict(config or {})
    needs = MethodNeeds.of(needs, name)
    who = _describe(factory, config)

    def fail(check: str, msg: str) -> NoReturn:
        raise AssertionError(f"check_method: {who}: [{check}] {msg}")

    if family is None and needs is not None and needs.plm:
        family = needs.plm[0]
    if family is not None and needs is not None and family not in needs.plm:
        raise TypeError(f"check_method: family {family!r} is not one the method accepts ({needs.plm})")
    plugins = plugins if plugins is not None else load_plugins()
    ctr = ComponentRef(TINY_CTR[0], dict(TINY_CTR[1])) if needs is None or needs.ctr else None
    plm = ComponentRef(plm_family(family).tiny) if family else None
    data = synthetic_data(seed=seed)
    spec = RunSpec("conformance", ComponentRef(data.name), ComponentRef(name, config), ctr, plm, dict(TINY_TRAIN),
                   seed)
    device = torch.device("cpu")

    def run(stages: Path) -> Any:
        trainer = Trainer(TrainConfig.from_dict(spec.train), device, NullReporter(), run_name=f"{name} (kit)",
                          seed=seed)
        ctx = RunContext(spec, data, plugins, trainer, device, trainer.reporter, stages)
        method = factory(**config)
        _check_members(method, Method, "interface", fail)
        return _run("predictions", fail, lambda: method.run(ctx))

    with tempfile.TemporaryDirectory(prefix="ctrbench-kit-") as tmp, torch.random.fork_rng(devices=[]):
        preds = run(Path(tmp))
        for split in ("valid", "test"):
            p = np.asarray(getattr(preds, split, None), dtype=np.float64)
            n = len(data.splits[split])
            if p.shape != (n,):
                fail("predictions", f"{split} has shape {p.shape}, expected ({n},): one per row of the split")
            scored = p[eval_positions(n, spec.train.get("eval_max_samples"))]
            if not np.isfinite(scored).all() or (scored < 0).any() or (scored > 1).any():
                fail("predictions", f"{split} probabilities must be finite and in [0, 1] on the scored rows, got "
                                    f"min {np.nanmin(scored):.3g}, max {np.nanmax(scored):.3g}, "
                                    f"{int((~np.isfinite(scored)).sum())} non-finite")
        if isinstance(preds.n_params, bool) or not isinstance(preds.n_params, (int, np.integer)) or preds.n_params < 1:
            fail("predictions", f"n_params must be a positive int, got {preds.n_params!r}")
        for attr in ("train_seconds", "infer_seconds"):
            value = getattr(preds, attr)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                fail("predictions", f"{attr} must be a finite number >= 0, got {value!r}")
        bad = {k: v for k, v in preds.extra.items() if not isinstance(k, str) or not isinstance(v, (int, float))}
        if bad:
            fail("predictions", f"extra must map names to floats (they are stored as metrics), got {bad}")
        if determinism:
            again = run(Path(tmp))
            for split in ("valid", "test"):
                a, b = np.asarray(getattr(preds, split)), np.asarray(getattr(again, split))
                if not np.array_equal(a, b, equal_nan=True):
                    fail("determinism", f"a second run under seed {seed} gives other {split} predictions "
                                        f"(max |diff| {np.nanmax(np.abs(a - b)):.3g})")


# -- executors --------------------------------------------------------------------------------------------

_KIT_SUITE = """\
schema_version: 1
name: kit-executor
datasets: [{name: synthetic, num_samples: 300, num_fields: 3, vocab_size: 10, history_length: 0}]
seeds: [%s]
defaults:
  method: ctr
  ctr: lr
  train: {epochs: 1, batch_size: 256}
"""


def check_executor(factory: Callable[..., Any], *, config: dict[str, Any] | None = None, run: bool = True,
                   runs: int = 2, plugins: Any = None) -> None:
    """Check an executor factory ``factory(**config) -> Executor`` (``ctrbench.protocols.Executor``).

    Checks: (1) **interface**: ``execute`` and, if set, a bool ``remote``; (2) **nothing to do**: ``execute([],
    run_one)`` yields nothing (and starts nothing); the ``RunOne`` it gets is the runner's, whose ``job``
    pickles; (3) **runs** (with ``run=True``): a suite of ``runs`` tiny runs (``lr`` on the built-in ``synthetic``
    dataset, one epoch) goes through `ctrbench.runner.run_suite` with this executor, in a temporary store: one
    result per run, all ok and stored. ``run=False`` is for executors whose runs happen elsewhere (a cluster
    the test machine does not have): checks (1) and (2) only.
    """
    from ctrbench.plugins import load_plugins
    from ctrbench.runner import InProcessRun, RunJob, Session, run_suite
    from ctrbench.suite import expand, load_suite

    config = dict(config or {})
    who = _describe(factory, config)

    def fail(check: str, msg: str) -> NoReturn:
        raise AssertionError(f"check_executor: {who}: [{check}] {msg}")

    executor = _run("interface", fail, lambda: factory(**config))
    _check_members(executor, Executor, "interface", fail)
    _run("interface", fail, lambda: _runs_elsewhere(executor))
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="ctrbench-kit-") as tmp, torch.random.fork_rng(devices=[]):
        try:
            root = Path(tmp)
            (root / "suite.yaml").write_text(textwrap.dedent(_KIT_SUITE % ", ".join(map(str, range(runs)))))
            suite = load_suite(root / "suite.yaml")
            session = Session.create(root / "runs", device="cpu", threads=1,
                                     plugins=plugins if plugins is not None else load_plugins(),
                                     cache_dir=root / "cache")
            run_one = InProcessRun(RunJob.from_session(suite, session), session, suite)
            pickle.loads(pickle.dumps(run_one.job))
            nothing = _run("nothing to do", fail, lambda: list(executor.execute([], run_one)))
            if nothing:
                fail("nothing to do", f"execute([]) yielded {len(nothing)} results")
            if not run:
                return
            specs = expand(suite)
            outcome = _run("runs", fail, lambda: run_suite(suite, session, executor=executor))
            ids = [r.run_id for r in outcome.results]
            if sorted(ids) != sorted(s.run_id for s in specs):
                fail("runs", f"expected one result per run ({len(specs)}), got {len(ids)}: {ids}")
            failed = [f"{r.run_id}: {r.error}" for r in outcome.results if not r.ok]
            if failed:
                fail("runs", f"runs failed: {failed}")
            missing = [s.run_id for s in specs if session.store.load(suite.name, s.run_id) is None]
            if missing:
                fail("runs", f"runs not in the store: {missing}")
        finally:
            torch.set_num_threads(threads)


# -- shared helpers -------------------------------------------------------------------------------------------

@contextmanager
def _directory(path: str | Path | None) -> Iterator[Path]:
    if path is not None:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="ctrbench-kit-") as tmp:
        yield Path(tmp)


def _run(check: str, fail: Callable[[str, str], NoReturn], fn: Callable[[], Any]) -> Any:
    """``fn()``, an exception from it reported as a failure of ``check``."""
    try:
        return fn()
    except AssertionError:
        raise
    except Exception as exc:
        fail(check, f"raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _check_members(obj: Any, protocol: type, check: str, fail: Callable[[str, str], NoReturn]) -> None:
    missing = missing_members(obj, protocol)
    if missing:
        fail(check, f"{type(obj).__name__} lacks {', '.join(missing)} of the {protocol.__name__} protocol "
                    f"(ctrbench.protocols.{protocol.__name__})")
