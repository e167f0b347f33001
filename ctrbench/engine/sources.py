"""What a phase iterates over: CTR rows of a dataset, or any indexed set (items, texts, users).

Why index tensors and no DataLoader: the arrays already sit on the device (or in a memmap), so a batch is one
gather; a DataLoader would add per-sample Python work and worker processes that two CPU cores cannot afford.
Every source shuffles with ``torch.randperm(n, generator=gen)`` once per epoch, so batch order depends on the
run's seed alone and is the same whatever the phase does with a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import torch

from ctrbench.data.types import CTRData
from ctrbench.models.base import Batch


class Source(Protocol):
    """An epoch's batches; ``num_batches`` sizes the progress bar and the learning-rate schedule."""

    def num_batches(self) -> int: ...

    def epoch(self, gen: torch.Generator | None) -> Iterator[Any]: ...


class DeviceData:
    """The dataset's arrays as tensors on the device (or a memmap gathered per batch)."""

    def __init__(self, data: CTRData, device: torch.device) -> None:
        self.device = device
        self.in_memory = not isinstance(data.X, np.memmap)
        to = (lambda a: torch.as_tensor(np.asarray(a)).to(device)) if self.in_memory else (lambda a: a)
        self.X = to(data.X)
        self.y = to(data.y.astype(np.float32, copy=False))
        self.sequences = {k: to(v) for k, v in data.sequences.items()}

    def batch(self, idx: torch.Tensor) -> Batch:
        if self.in_memory:
            idx = idx.to(self.device)
            # index_select: the same rows as X[idx], without advanced indexing's generic kernel (3x faster on a
            # 256-row batch, ~7 us a step on the CPU)
            take = lambda a: a.index_select(0, idx)  # noqa: E731
            return Batch(take(self.X), take(self.y), idx, {k: take(v) for k, v in self.sequences.items()})
        rows = np.sort(idx.numpy())  # sorted reads are sequential on disk
        get = lambda a: torch.from_numpy(np.asarray(a[rows])).to(self.device)  # noqa: E731
        return Batch(get(self.X), get(self.y).float(), torch.from_numpy(rows).to(self.device),
                     {k: get(v) for k, v in self.sequences.items()})


def shuffled(indices: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    return indices[torch.randperm(len(indices), generator=gen)] if gen is not None else indices


def chunks(order: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


class IndexSource:
    """Batches of positions into any indexed set, turned into a batch by ``collate(index_tensor)``.

    For CELA's item-level alignment (indices are item ids), SimCSE over texts, or prompts of an LLM (indices
    are dataset rows and ``collate`` renders and tokenises them).
    """

    def __init__(self, indices: torch.Tensor | np.ndarray | int, batch_size: int,
                 collate: Callable[[torch.Tensor], Any] = lambda idx: idx) -> None:
        if isinstance(indices, int):
            indices = torch.arange(indices)
        self.indices = torch.as_tensor(np.asarray(indices) if isinstance(indices, np.ndarray) else indices,
                                       dtype=torch.long)
        self.batch_size = batch_size
        self.collate = collate

    def num_batches(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def epoch(self, gen: torch.Generator | None) -> Iterator[Any]:
        for idx in chunks(shuffled(self.indices, gen), self.batch_size):
            yield self.collate(idx)


class RowSource(IndexSource):
    """Batches of a dataset's rows (``Batch`` objects) gathered from ``DeviceData``."""

    def __init__(self, device_data: DeviceData, rows: torch.Tensor, batch_size: int) -> None:
        super().__init__(rows, batch_size, device_data.batch)
