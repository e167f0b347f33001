"""Criteo Display Advertising Challenge (Kaggle 2014), preprocessed as BARS/FuxiCTR do, out of core.

Raw data: ``train.txt`` from Criteo's ``criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz``
(45,840,617 lines, 11 GB): tab-separated, no header; a 0/1 label, 13 integer features I1–I13 and 26 hashed
categorical features C1–C26 (8 hex digits); an empty field is missing. Criteo's licence has to be accepted
(Criteo AI Lab or the Kaggle competition page), so there is no download here and no published checksum: the
file's sha256 goes into the cache key (remembered by path, size and mtime, so 11 GB are hashed once).

Preprocessing (BARS/FuxiCTR): every feature is categorical. I1–I13 are binned: x > 2 becomes
floor(ln(x)^2), x <= 2 stays its integer value (so -1, 0, 1, 2 are categories of their own). Per feature,
values seen fewer than ``min_count`` (10) times share one "rare" index. Split 8:1:1 by row order (the file
is in time order). Differences from BARS, kept because the rest of ctrbench works this way: a missing value
is index 0 ("unknown") in every feature (BARS fills a missing integer with 0 before binning); the vocabulary
is counted over all rows, like every ctrbench dataset (FuxiCTR counts the train split only); indices are
ordered by frequency (ties: by value for I, by the value's 64-bit hash for C). Index 1 is always "rare".

Scale: two streaming passes over the file with pandas ``read_csv(chunksize=...)``; pass 1 counts values with
numpy (``ValueCounter``: keys are pandas' 64-bit hashes of the strings, 16 bytes a distinct value), pass 2
encodes each chunk and appends it to the ``.npy`` files of the cache (``NpyWriter``). Memory is one chunk
plus the counters, whatever the number of rows. ``ts`` is the row number; there are no users or items, so
``user``/``item`` are 0 (long-tail buckets are empty) and there is no history or item text.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from ctrbench.data.outofcore import KeyIndex, NpyWriter, ValueCounter
from ctrbench.data.prep import UNKNOWN, check_count, check_split, split_bounds
from ctrbench.data.progress import step
from ctrbench.data.types import SPLITS, CTRData, Field
from ctrbench.errors import DataError
from ctrbench_datasets.base import AUTO, RawDataset

log = logging.getLogger(__name__)

NAME = "criteo"
PREPROCESS_VERSION = 1
FILE = "train.txt"
NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
COLUMNS = ("label", *NUMERIC, *CATEGORICAL)
RARE = "rare"
RARE_INDEX = 1
_DTYPES = {"label": "float64", **{c: "float64" for c in NUMERIC}, **{c: object for c in CATEGORICAL}}


class Criteo(RawDataset):
    """The Criteo Kaggle ``train.txt`` as a CTR task (BARS/FuxiCTR preprocessing, out of core).

    ``source``: "auto" (``<cache>/raw/criteo/train.txt``) or a directory holding ``train.txt``.
    ``min_count``: values seen fewer times share the "rare" index. ``split``: train/valid/test shares of the
    row order. ``chunk_size``: rows per chunk of each pass (bounds memory; does not change the arrays).
    """

    name = NAME
    version = PREPROCESS_VERSION
    files = (FILE,)
    manual = ("accept Criteo's licence and download criteo-research-kaggle-display-advertising-challenge-"
              "dataset.tar.gz (https://ailab.criteo.com/ressources/, or the data of Kaggle's "
              "criteo-display-ad-challenge), then extract train.txt from it")

    def __init__(self, source: str = AUTO, min_count: int = 10, split: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 chunk_size: int = 25_000) -> None:
        super().__init__(source)
        self.min_count = check_count(NAME, "min_count", min_count, minimum=1)
        self.split = check_split(NAME, split)
        self.chunk_size = check_count(NAME, "chunk_size", chunk_size, minimum=1)

    def config(self) -> dict[str, Any]:
        return {"min_count": self.min_count, "split": list(self.split)}

    def build(self, files: dict[str, Path], workdir: Path) -> CTRData:
        return prepare(files[FILE], workdir, min_count=self.min_count, split=self.split, chunk_size=self.chunk_size)


# -- the two passes ---------------------------------------------------------------------------------------------

def bin_numeric(x: np.ndarray) -> np.ndarray:
    """BARS/FuxiCTR's ``convert_to_bucket``: floor(ln(x)^2) for x > 2, else int(x); float64 in, int64 out.

    Missing values (NaN) come out as 0 here; callers mask them separately.
    """
    x = np.asarray(x, dtype=np.float64)
    big = x > 2
    out = np.zeros(len(x), dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[big] = np.floor(np.log(x[big]) ** 2).astype(np.int64)
    small = ~big & ~np.isnan(x)
    out[small] = np.trunc(x[small]).astype(np.int64)
    return out


def _category_keys(column: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes into the chunk's distinct values, -1 = missing; those values; their int64 hashes).

    The column is read as strings (pandas' ``category`` dtype would turn a chunk whose values all look like
    numbers, "00000123", into the integer 123), factorised, and only the distinct values are hashed.
    """
    codes, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=object)
    hashes = pd.util.hash_array(uniques, categorize=False).view(np.int64)
    return codes.astype(np.int64), uniques, hashes


def _chunks(path: Path, chunk_size: int, advance: Callable[[int], None]) -> Iterator[pd.DataFrame]:
    """The file as DataFrames of ``chunk_size`` rows; ``advance`` gets the bytes consumed."""
    f: BinaryIO
    with open(path, "rb") as f:
        reader = pd.read_csv(f, sep="\t", header=None, names=list(COLUMNS), dtype=_DTYPES, chunksize=chunk_size,
                             keep_default_na=False, na_values={c: [""] for c in COLUMNS}, quoting=csv.QUOTE_NONE,
                             engine="c", low_memory=False)
        done = 0
        rows = 0
        try:
            for chunk in reader:
                _check_labels(chunk, rows, path)
                rows += len(chunk)
                yield chunk
                now = f.tell()
                advance(now - done)
                done = now
        except (pd.errors.ParserError, ValueError) as exc:
            raise DataError(f"{NAME}: {path}: malformed line after row {rows}: {exc}") from None


def _check_labels(chunk: pd.DataFrame, offset: int, path: Path) -> None:
    label = chunk["label"].to_numpy()
    bad = ~((label == 0) | (label == 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"{NAME}: {path}: line {offset + first + 1}: the label must be 0 or 1, "
                        f"got {label[first]}")


def _count(path: Path, chunk_size: int) -> tuple[int, dict[str, ValueCounter]]:
    counters = {c: ValueCounter() for c in (*NUMERIC, *CATEGORICAL)}
    n = 0
    with step(f"{NAME}: counting values (pass 1 of 2)", os.path.getsize(path)) as advance:
        for chunk in _chunks(path, chunk_size, advance):
            n += len(chunk)
            for c in NUMERIC:
                x = chunk[c].to_numpy()
                counters[c].add(bin_numeric(x[~np.isnan(x)]))
            for c in CATEGORICAL:
                codes, _, hashes = _category_keys(chunk[c])
                counters[c].add(hashes[codes[codes >= 0]])
    return n, counters


def _index(counter: ValueCounter, min_count: int) -> tuple[KeyIndex, np.ndarray]:
    """Kept keys (count >= min_count) numbered 2, 3, … by frequency (ties by key); the kept keys in index order."""
    keys, counts = counter.result()
    keep = counts >= min_count
    keys, counts = keys[keep], counts[keep]
    order = np.lexsort((keys, -counts))
    ranked = keys[order]
    return KeyIndex(ranked, np.arange(2, 2 + len(ranked), dtype=np.int64), default=RARE_INDEX), ranked


def prepare(path: Path, workdir: Path, *, min_count: int, split: tuple[float, ...], chunk_size: int) -> CTRData:
    """Both passes over ``path``; arrays are written into ``workdir`` and returned memory-mapped."""
    n, counters = _count(path, chunk_size)
    if n == 0:
        raise DataError(f"{NAME}: {path} has no rows")
    indices, ranked = {}, {}
    for c, counter in counters.items():
        indices[c], ranked[c] = _index(counter, min_count)
    del counters
    names = {c: np.full(len(ranked[c]), None, dtype=object) for c in CATEGORICAL}
    fields = [Field(c, "categorical", 2 + len(ranked[c]), c) for c in (*NUMERIC, *CATEGORICAL)]
    writers = {"X": NpyWriter(workdir, "X", (n, len(fields)), np.int64), "y": NpyWriter(workdir, "y", (n,), np.float32),
               **{a: NpyWriter(workdir, a, (n,), np.int64) for a in ("ts", "user", "item")}}
    try:
        _encode(path, chunk_size, n, indices, names, writers)
    except BaseException:
        for w in writers.values():
            w.discard()
        raise
    arrays = {name: w.close() for name, w in writers.items()}
    vocab = {c: [UNKNOWN, RARE, *(str(int(k)) for k in ranked[c])] for c in NUMERIC}
    for c in CATEGORICAL:
        if any(v is None for v in names[c]):  # cannot happen: every kept value occurred in pass 2
            raise DataError(f"{NAME}: {path} changed while it was read (a value of {c} vanished)")
        vocab[c] = [UNKNOWN, RARE, *names[c].tolist()]
    splits = _write_splits(workdir, n, split, chunk_size)
    y = arrays["y"]
    log.info("%s: %d rows, %.2f%% positive, %d features after min_count %d", NAME, n, 100 * float(np.mean(y)),
             sum(f.vocab_size for f in fields), min_count)
    return CTRData(name=NAME, fields=fields, X=arrays["X"], y=y, ts=arrays["ts"], user=arrays["user"],
                   item=arrays["item"], splits=splits, vocab=vocab, user_field="", item_field="",
                   description=f"Criteo Kaggle train.txt from {path.parent}: {n} rows, BARS binning, "
                               f"min_count {min_count}, split {'/'.join(f'{s:g}' for s in split)} by row order")


def _encode(path: Path, chunk_size: int, n: int, indices: dict[str, KeyIndex], names: dict[str, np.ndarray],
            writers: dict[str, NpyWriter]) -> None:
    """Pass 2: every chunk's rows as vocabulary indices, appended to the array files."""
    n_fields = len(NUMERIC) + len(CATEGORICAL)
    row = 0
    with step(f"{NAME}: encoding (pass 2 of 2)", os.path.getsize(path)) as advance:
        for chunk in _chunks(path, chunk_size, advance):
            m = len(chunk)
            if row + m > n:
                break
            block = np.empty((m, n_fields), dtype=np.int64)
            for j, c in enumerate(NUMERIC):
                x = chunk[c].to_numpy()
                block[:, j] = np.where(np.isnan(x), 0, indices[c].lookup(bin_numeric(x)))
            for j, c in enumerate(CATEGORICAL, start=len(NUMERIC)):
                codes, uniques, hashes = _category_keys(chunk[c])
                _name_values(names[c], indices[c], hashes, uniques)
                per_category = np.concatenate([indices[c].lookup(hashes), [0]])  # code -1 (missing) → 0
                block[:, j] = per_category[codes]
            writers["X"].append(block)
            writers["y"].append(chunk["label"].to_numpy(np.float32))
            writers["ts"].append(np.arange(row, row + m, dtype=np.int64))
            zeros = np.zeros(m, np.int64)
            writers["user"].append(zeros)
            writers["item"].append(zeros)
            row += m
    if row != n:
        raise DataError(f"{NAME}: {path} changed while it was read ({n} rows in pass 1, not in pass 2)")


def _name_values(names: np.ndarray, index: KeyIndex, hashes: np.ndarray, values: np.ndarray) -> None:
    """Record the string of each kept value (``names[i - 2]`` for index i) the first time a chunk holds it."""
    slots = index.lookup(hashes) - 2  # kept values: 0, 1, ...; rare ones: -1
    hit = np.flatnonzero(slots >= 0)
    unnamed = hit[np.equal(names[slots[hit]], None)]
    if len(unnamed):
        names[slots[unnamed]] = values[unnamed]


def _write_splits(workdir: Path, n: int, split: tuple[float, ...], chunk_size: int) -> dict[str, np.ndarray]:
    bounds = [0, *split_bounds(n, split), n]
    out = {}
    for s, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
        w = NpyWriter(workdir, f"split_{s}", (hi - lo,), np.int64)
        step_rows = max(chunk_size, 1 << 16)
        for start in range(lo, hi, step_rows):
            w.append(np.arange(start, min(hi, start + step_rows), dtype=np.int64))
        out[s] = w.close()
    return out


def expected_size(n: int) -> int:
    """Bytes of the arrays ``prepare`` writes for ``n`` rows (X, y, ts, user, item, splits)."""
    return n * (8 * (len(NUMERIC) + len(CATEGORICAL)) + 4 + 8 * 3 + 8)

