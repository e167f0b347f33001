"""Building datasets larger than memory: count values in chunks, write ``.npy`` files row block by row block.

- ``ValueCounter``: occurrences of int64 keys (hashed strings, binned numbers) over a stream of chunks, kept as
  two sorted numpy arrays (16 bytes a distinct value, no Python object per value), merged in batches so a
  chunk costs O(distinct values in the chunk) until the next merge.
- ``NpyWriter``: an ``.npy`` file of known shape written by appending row blocks with plain file writes. The
  file is then opened as a read-only ``np.memmap`` (what ``cached_dataset`` stores without copying). Plain
  writes instead of writing through a writable memmap keep the written pages out of the process's resident
  set: the page cache holds them, not the builder, so peak RSS stays at one chunk plus the counters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ctrbench.data.cache import array_path


class ValueCounter:
    """How often each int64 key occurs, over ``add`` calls; ``keys``/``counts`` sorted by key after ``result``."""

    def __init__(self, merge_at: int = 1 << 20) -> None:
        self.merge_at = int(merge_at)
        self._keys = np.empty(0, np.int64)
        self._counts = np.empty(0, np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, keys: np.ndarray) -> None:
        k, c = np.unique(np.asarray(keys, dtype=np.int64), return_counts=True)
        self._pending.append((k, c.astype(np.int64)))
        self._pending_size += len(k)
        if self._pending_size > max(len(self._keys), self.merge_at):  # amortised: merged work stays linear
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys, *(k for k, _ in self._pending)])
        counts = np.concatenate([self._counts, *(c for _, c in self._pending)])
        self._pending, self._pending_size = [], 0
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]])) if len(keys) else np.empty(0, int)
        self._keys = keys[starts]
        self._counts = np.add.reduceat(counts, starts) if len(starts) else np.empty(0, np.int64)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, counts)``: the distinct keys, ascending, and how often each occurred."""
        self._merge()
        return self._keys, self._counts


class KeyIndex:
    """Maps int64 keys to vocabulary indices: kept keys → their index, any other key → ``default``."""

    def __init__(self, keys: np.ndarray, indices: np.ndarray, default: int) -> None:
        order = np.argsort(keys, kind="stable")
        self.keys = np.asarray(keys, dtype=np.int64)[order]
        self.indices = np.asarray(indices, dtype=np.int64)[order]
        self.default = int(default)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        if len(self.keys) == 0:
            return np.full(len(keys), self.default, np.int64)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, self.indices[pos], self.default)


class NpyWriter:
    """``<workdir>/<name>.npy`` of ``shape`` and ``dtype``, filled by ``append``-ing row blocks in order."""

    def __init__(self, workdir: Path, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        self.path = array_path(workdir, name)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        write_header = np.lib.format.write_array_header_2_0 if _needs_v2(header) else \
            np.lib.format.write_array_header_1_0
        write_header(self._file, header)

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self.rows + len(block) > self.shape[0]:
            raise ValueError(f"{self.path.name}: block of shape {block.shape} does not fit "
                             f"{self.shape} after {self.rows} rows")
        self._file.write(block.tobytes())
        self.rows += len(block)

    def discard(self) -> None:
        """Close the file after a failure (the half-written directory is removed by ``cached_dataset``)."""
        self._file.close()

    def close(self) -> np.memmap:
        """Check that every row was written and return the file as a read-only memmap."""
        self._file.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path.name}: {self.rows} of {self.shape[0]} rows written")
        return np.load(self.path, mmap_mode="r", allow_pickle=False)


def _needs_v2(header: dict[str, Any]) -> bool:
    try:
        np.lib.format.write_array_header_1_0(_Null(), header)
    except ValueError:
        return True
    return False


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)
