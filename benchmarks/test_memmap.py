"""One epoch of batches from a memory-mapped synthetic dataset, without loading it.

``synthetic(memmap=True)`` writes its arrays block by block into ``.npy`` files in the dataset cache and loads
them back as ``np.memmap``; ``DeviceData`` then gathers each batch's rows from the map (sorted, so reads are
sequential) instead of moving the arrays to the device. This checks that an epoch through
``Trainer.batches`` really stays out of core, and times it (rows/s of batch gathering alone, no model).

The memory check is on *anonymous* resident memory (``RssAnon``): pages of the mapped file that an epoch
touches count in RSS as page cache the kernel may drop, while a copy of ``X`` would be anonymous. An
epoch legitimately allocates its shuffled row order: ``rows`` and ``rows[perm]`` and ``perm``, three
int64[n_train] vectors (24 bytes a row, against 64 bytes a row of ``X`` with 8 fields), so the bound is
those plus a fixed slack, and at 1M rows and up it is also asserted to be well under the size of ``X``.

Size: ``--bench-memmap-rows`` (env ``CTRBENCH_BENCH_MEMMAP_ROWS``), 200,000 by default for a quick run;
the full check is 10,000,000 rows (about 1 GB written to the dataset cache, once).
"""

from __future__ import annotations

import numpy as np
import torch
from peakmem import MiB, rss_anon, trim_heap

from ctrbench.plugins import load_plugins
from ctrbench.trainer import DeviceData, TrainConfig, Trainer

BATCH = 4096
SLACK = 48 * MiB  # allocator arenas, torch's per-batch tensors, the sampling itself


def test_memmap_epoch_stays_out_of_core(benchmark, bench):
    rows = bench.memmap_rows
    dataset = load_plugins().registry("datasets").get("synthetic").create(
        num_samples=rows, num_fields=8, vocab_size=10_000, seed=0, history_length=0, memmap=True)
    data = dataset.load(bench.cache)
    assert isinstance(data.X, np.memmap), type(data.X)

    trainer = Trainer(TrainConfig(batch_size=BATCH), torch.device("cpu"), seed=bench.seed)
    dd = trainer.device_data(data)
    assert isinstance(dd, DeviceData) and not dd.in_memory
    assert isinstance(dd.X, np.memmap), "DeviceData copied the memory-mapped X"

    result: dict[str, int] = {}

    def epoch() -> None:
        trim_heap()
        base = peak = rss_anon()
        train = trainer.train_rows(data)
        gen = torch.Generator().manual_seed(bench.seed)
        seen = checksum = 0
        for step, batch in enumerate(trainer.batches(dd, train, BATCH, gen)):
            seen += len(batch)
            checksum += int(batch.x[:, 0].sum())
            if step % 8 == 0:
                peak = max(peak, rss_anon())
        peak = max(peak, rss_anon())
        result.update(base=base, peak=peak, seen=seen, n_train=len(train), checksum=checksum)

    benchmark.group = "memmap epoch"
    benchmark.pedantic(epoch, rounds=1, warmup_rounds=0, iterations=1)

    n_train = result["n_train"]
    growth = result["peak"] - result["base"]
    index_bytes = 3 * 8 * n_train
    benchmark.extra_info.update(
        rows=rows, n_train=n_train, batch_size=BATCH, x_mib=round(data.X.nbytes / MiB, 1),
        anon_growth_mib=round(growth / MiB, 1), index_mib=round(index_bytes / MiB, 1),
        growth_over_x=round(growth / data.X.nbytes, 3))

    assert result["seen"] == n_train, "an epoch must visit every training row exactly once"
    train_rows = np.asarray(data.splits["train"])
    assert result["checksum"] == int(data.X[train_rows, 0].sum()), "batches lost or repeated rows"
    assert growth <= index_bytes + SLACK, (
        f"anonymous memory grew by {growth / MiB:.0f} MiB during one epoch over a {data.X.nbytes / MiB:.0f} MiB "
        f"memmap; the shuffled row order accounts for {index_bytes / MiB:.0f} MiB")
    if rows >= 1_000_000:
        assert growth < data.X.nbytes / 2, "one epoch allocated more than half of X: it was (partly) loaded"
