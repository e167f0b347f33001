"""The conformance kit: checks a third-party component against the contract the core relies on.

Call these from your own tests; each raises ``AssertionError`` naming the check and the component when
something is off, and returns ``None`` otherwise::

    from ctrbench.testing import check_ctr_backbone
    from mypkg.model import MyModel

    def test_my_model_conforms():
        check_ctr_backbone(MyModel, config={"num_layers": 2})

Only torch and numpy are needed; the checks run on CPU in well under a second for a small model, and
they do not disturb the caller's global random state. Sequence models (DIN, DIEN) are checked with
``with_history=True``: the fields then include a ``history`` sequence field sharing ``item_id`` and the
batch carries ``sequences["history"]``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np
import torch

from ctrbench.data.types import SPLITS, CTRData, Field
from ctrbench.models.base import Batch, FieldEmbedding

__all__ = ["check_ctr_backbone", "check_dataset", "synthetic_fields", "synthetic_batch"]

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


def check_dataset(data: CTRData) -> None:
    """Check the invariants every method relies on; raise ``AssertionError`` naming the dataset and field.

    X is int64 within [0, vocab_size) per field; y is in {0, 1}; each split is non-empty, sorted, unique,
    within [0, N) and disjoint from the others; ``vocab[name]`` has ``vocab_size`` entries; sequences are
    int64 [N, L] within their field's vocabulary.
    """
    if not isinstance(data, CTRData):
        raise AssertionError(f"check_dataset: expected a CTRData, got {type(data).__name__}")

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
