"""A synthetic CTR dataset with a planted signal that feature-interaction models can find and LR cannot.

Every field draws its values from a Zipf-like law (index 1 the most frequent), so users and items have
a long tail. The label is ``y ~ Bernoulli(sigmoid(logit))`` with

    logit = b + sum_j w_j[x_j] + strength * <P[user], Q[item]>

first-order value weights ``w_j`` (what LR can learn) plus a user x item latent-factor interaction (what
FM/DCN can learn and LR cannot). Rows are generated in fixed blocks of ``BLOCK`` rows, each from its own
seeded stream, so the data depends only on the config (not on ``chunk_size`` or memmap mode), and with
``memmap=True`` the arrays are written block by block into ``.npy`` memmaps in the cache: 10M rows work
without holding ``X`` in memory.

User history (for DIN/DIEN), ``history_length`` L > 0: ``sequences["history"]`` int64[N, L] holds, per
sample, the items of the same user's earlier rows with label 1 (``ts`` is the row index, so "earlier" is
"an earlier row"), most recent first, zero-padded, in ``item_id`` indices (see ``ctrbench.data.history``).
The planted label does not depend on it: the history carries no signal beyond the user's own fields, so a
sequence model should match, not beat, its history-free counterpart here. In memmap mode the history is
written in row chunks into a memmap too; building it sorts the rows by user, which needs a few int64[N]
arrays in memory (under 100 bytes a row), never ``X`` or the ``[N, L]`` table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ctrbench.data.cache import cached_dataset, key_hash, open_array
from ctrbench.data.history import user_history
from ctrbench.data.types import SPLITS, CTRData, Field
from ctrbench.errors import DataError

log = logging.getLogger(__name__)

NAME = "synthetic"
PREPROCESS_VERSION = 2  # 2: user history sequences
BLOCK = 1 << 16
FACTORS = 4
ZIPF_EXPONENT = 1.1
_PARAM_STREAM = 1 << 40  # keeps the parameter stream apart from the row-block streams


class Synthetic:
    """Zipf-distributed categorical fields with a planted first-order + user x item interaction signal.

    ``vocab_size`` is the number of distinct values per field (the field's embedding table has one more
    row, index 0 = unknown). ``interaction_strength`` scales the user x item term; 0 makes LR sufficient.
    ``history_length``: length L of each sample's liked-items history (``sequences["history"]``); 0 = none.
    """

    def __init__(self, num_samples: int = 20000, num_fields: int = 8, vocab_size: int = 100, seed: int = 0,
                 interaction_strength: float = 1.0, memmap: bool = False, chunk_size: int = 1_000_000,
                 history_length: int = 20) -> None:
        if num_samples < 10:
            raise DataError(f"{NAME}: num_samples must be at least 10, got {num_samples}")
        if num_fields < 2:
            raise DataError(f"{NAME}: num_fields must be at least 2 (user_id and item_id), got {num_fields}")
        if vocab_size < 2:
            raise DataError(f"{NAME}: vocab_size must be at least 2, got {vocab_size}")
        if chunk_size < 1:
            raise DataError(f"{NAME}: chunk_size must be positive, got {chunk_size}")
        if int(history_length) != history_length or history_length < 0:
            raise DataError(f"{NAME}: history_length must be a non-negative integer, got {history_length!r}")
        self.num_samples = int(num_samples)
        self.num_fields = int(num_fields)
        self.vocab_size = int(vocab_size)
        self.seed = int(seed)
        self.interaction_strength = float(interaction_strength)
        self.memmap = bool(memmap)
        self.chunk_size = int(chunk_size)
        self.history_length = int(history_length)

    def config(self) -> dict[str, Any]:
        """What the arrays depend on. ``chunk_size`` is absent (it only bounds memory); ``memmap`` is there
        because it decides whether the cached arrays are memory-mapped when loaded."""
        return {"num_samples": self.num_samples, "num_fields": self.num_fields, "vocab_size": self.vocab_size,
                "seed": self.seed, "interaction_strength": self.interaction_strength, "memmap": self.memmap,
                "history_length": self.history_length}

    def _key(self) -> dict[str, Any]:
        return {"name": NAME, "version": PREPROCESS_VERSION, "config": self.config()}

    def fingerprint(self, cache_dir: Path | None = None) -> str:
        return key_hash(self._key())

    def load(self, cache_dir: Path) -> CTRData:
        return cached_dataset(Path(cache_dir), self._key(), self.build)

    # -- generation --------------------------------------------------------------------------------
    @property
    def field_names(self) -> list[str]:
        return ["user_id", "item_id"] + [f"f{j}" for j in range(2, self.num_fields)]

    def _prefixes(self) -> list[str]:
        return ["u", "i"] + [f"f{j}_" for j in range(2, self.num_fields)]

    def params(self) -> dict[str, np.ndarray]:
        """The planted model: per-field value weights, user/item factors, bias, and the value law's CDF."""
        rng = np.random.default_rng([self.seed, _PARAM_STREAM])
        v = self.vocab_size + 1
        weights = rng.normal(0.0, 0.5, size=(self.num_fields, v))
        weights[:, 0] = 0.0
        p = rng.normal(0.0, 0.8, size=(v, FACTORS))
        q = rng.normal(0.0, 0.8, size=(v, FACTORS))
        ranks = np.arange(1, self.vocab_size + 1, dtype=np.float64)
        pmf = ranks ** -ZIPF_EXPONENT
        cdf = np.cumsum(pmf / pmf.sum())
        cdf[-1] = 1.0
        return {"weights": weights, "p": p, "q": q, "bias": np.array(-0.2), "cdf": cdf}

    def planted_logit(self, X: np.ndarray, params: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The true logit of rows ``X`` (for tests and for sanity checks of trained models)."""
        params = params or self.params()
        X = np.asarray(X, dtype=np.int64)
        first = params["weights"][np.arange(self.num_fields), X].sum(axis=1)
        inter = np.einsum("nk,nk->n", params["p"][X[:, 0]], params["q"][X[:, 1]])
        return params["bias"] + first + self.interaction_strength * inter

    def _block(self, b: int, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        start = b * BLOCK
        n = min(BLOCK, self.num_samples - start)
        rng = np.random.default_rng([self.seed, b])
        X = np.searchsorted(params["cdf"], rng.random((n, self.num_fields)), side="right").astype(np.int64) + 1
        np.minimum(X, self.vocab_size, out=X)
        prob = 1.0 / (1.0 + np.exp(-self.planted_logit(X, params)))
        y = (rng.random(n) < prob).astype(np.float32)
        return X, y

    def build(self, workdir: Path) -> CTRData:
        """Generate the arrays; in memmap mode straight into ``.npy`` memmaps in the cache directory."""
        n, f = self.num_samples, self.num_fields
        params = self.params()

        def alloc(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            return open_array(workdir, name, shape, dtype) if self.memmap else np.empty(shape, dtype)

        X, y = alloc("X", (n, f), np.int64), alloc("y", (n,), np.float32)
        ts, user, item = (alloc(a, (n,), np.int64) for a in ("ts", "user", "item"))
        written = 0
        for b in range((n + BLOCK - 1) // BLOCK):
            xb, yb = self._block(b, params)
            s = slice(b * BLOCK, b * BLOCK + len(yb))
            X[s], y[s], user[s], item[s] = xb, yb, xb[:, 0], xb[:, 1]
            ts[s] = np.arange(s.start, s.stop, dtype=np.int64)
            written += len(yb)
            if self.memmap and written >= self.chunk_size:
                for a in (X, y, ts, user, item):
                    a.flush()  # type: ignore[union-attr]
                written = 0
        splits = self._splits(n, alloc)
        fields = [Field(name, "categorical", self.vocab_size + 1, name.replace("_", " "))
                  for name in self.field_names]
        vocab = {name: ["unknown"] + [f"{prefix}{k}" for k in range(1, self.vocab_size + 1)]
                 for name, prefix in zip(self.field_names, self._prefixes(), strict=True)}
        sequences, sequence_fields = {}, []
        if self.history_length > 0:
            history = alloc("seq_history", (n, self.history_length), np.int64)
            sequences["history"] = user_history(np.asarray(user), np.asarray(ts), np.asarray(y), np.asarray(item),
                                                self.history_length, out=history, chunk_size=self.chunk_size)
            sequence_fields.append(Field("history", "sequence", self.vocab_size + 1, "recently liked items",
                                         shares="item_id"))
        return CTRData(name=NAME, fields=fields, X=X, y=y, ts=ts, user=user, item=item, splits=splits, vocab=vocab,
                       sequences=sequences, sequence_fields=sequence_fields,
                       description=f"synthetic CTR data: {n} rows, {f} Zipf fields of {self.vocab_size} values, "
                                   f"user x item interaction strength {self.interaction_strength:g}, "
                                   f"seed {self.seed}")

    def _splits(self, n: int, alloc: Any) -> dict[str, np.ndarray]:
        """Temporal 8:1:1 over row order (``ts`` is the row index), filled in chunks."""
        bounds = [0, int(n * 0.8), int(n * 0.9), n]
        out = {}
        for s, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
            arr = alloc(f"split_{s}", (hi - lo,), np.int64)
            for c in range(0, hi - lo, self.chunk_size):
                arr[c:c + self.chunk_size] = np.arange(lo + c, min(hi, lo + c + self.chunk_size), dtype=np.int64)
            out[s] = arr
        return out
