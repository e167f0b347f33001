"""Preparing Criteo out of core: rows/s and peak memory of ``criteo``'s two streaming passes.

A file in the Kaggle ``train.txt`` format (label, 13 integers, 26 8-hex-digit categoricals, empty = missing)
of ``CTRBENCH_BENCH_CRITEO_ROWS`` rows (default 5,000,000; the real file has 45,840,617) is generated once
into the benchmark cache, with Criteo-like cardinalities: a few categorical columns with a long tail of
near-unique values (so most values fall under ``min_count`` 10, as in the real data), others with hundreds or
a handful of values. Then one timed round prepares it from scratch (both passes, arrays written to a fresh
cache directory).

Reported: rows/s, the arrays' size, and the peak growth of the process's resident memory during preparation
(``peakmem.PeakRSS``: the kernel's high-water mark, reset before the round). The bound asserted is the issue's:
peak growth below 2x the size of the final arrays. The growth is what preparation itself costs; the Python,
torch and pandas the process had already loaded are the baseline, not part of it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from peakmem import MiB, PeakRSS

from ctrbench.plugins import load_plugins
from ctrbench_datasets.criteo import CATEGORICAL, COLUMNS, NUMERIC

ROWS_ENV = "CTRBENCH_BENCH_CRITEO_ROWS"
BLOCK = 250_000
SEED = 0


def _cardinalities(n: int) -> list[int]:
    """Distinct values per categorical column, shaped like the real C1–C26 (a few huge, many small)."""
    huge = max(1000, n // 4)
    return [1_400, 550, huge, huge // 4, 300, 24, 12_000, 630, 3, max(100, n // 50), 5_600, huge, 3_200, 27,
            14_000, huge, 10, 5_600, 2_100, 4, huge // 2, 18, 15, max(100, n // 150), 105, 140_000]


def write_criteo_file(path: Path, n: int, seed: int = SEED) -> None:
    """``n`` lines in the Kaggle format, written block by block (memory: one block)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    cards = _cardinalities(n)
    with open(tmp, "w", encoding="ascii") as f:
        for b, start in enumerate(range(0, n, BLOCK)):
            m = min(BLOCK, n - start)
            rng = np.random.default_rng([seed, b])
            cols: dict[str, object] = {"label": (rng.random(m) < 0.25).astype(np.int8)}
            for c in NUMERIC:  # heavy-tailed counts, a few -1, a quarter missing
                x = np.floor(rng.pareto(1.2, m) * 3).astype(np.int64) - (rng.random(m) < 0.05)
                cols[c] = np.where(rng.random(m) < 0.25, "", x.astype(str))
            for j, (c, card) in enumerate(zip(CATEGORICAL, cards, strict=True)):
                ids = np.floor(card * rng.random(m) ** 3).astype(np.int64)  # skewed towards small ids
                hexes = (ids * 2654435761 + 7919 * j) % 2**32
                uniq, inv = np.unique(hexes, return_inverse=True)
                text = np.array([f"{v:08x}" for v in uniq], dtype=object)[inv]
                cols[c] = np.where(rng.random(m) < 0.1, "", text)
            pd.DataFrame(cols, columns=list(COLUMNS)).to_csv(f, sep="\t", header=False, index=False)
    os.replace(tmp, path)


def test_criteo_prepare_rows_per_second_and_peak_memory(benchmark, bench):
    n = int(os.environ.get(ROWS_ENV, "5000000"))
    raw = Path(bench.cache) / "bench-criteo" / f"{n}-{SEED}"
    if not (raw / "train.txt").is_file():
        write_criteo_file(raw / "train.txt", n)
    work = Path(bench.cache) / "bench-criteo" / "prepared"
    dataset = load_plugins().registry("datasets").get("criteo").create(source=str(raw))
    result: dict[str, float] = {}

    def setup() -> None:
        shutil.rmtree(work, ignore_errors=True)

    def prepare() -> None:
        mem = PeakRSS()
        mem.start()
        t = time.perf_counter()
        data = dataset.load(work)
        seconds = time.perf_counter() - t
        growth = mem.stop()
        assert data.num_samples == n
        arrays = sum(p.stat().st_size for p in next((work / "preprocessed").iterdir()).glob("*.npy"))
        result.update(seconds=seconds, growth=growth, arrays=arrays, exact=mem.exact,
                      fields=sum(f.vocab_size for f in data.fields))

    benchmark.group = "criteo prepare"
    benchmark.pedantic(prepare, setup=setup, rounds=1, warmup_rounds=0, iterations=1)
    ratio = result["growth"] / result["arrays"]
    benchmark.extra_info.update(
        rows=n, rows_per_s=round(n / result["seconds"]), seconds=round(result["seconds"], 1),
        file_mib=round((raw / "train.txt").stat().st_size / MiB, 1), arrays_mib=round(result["arrays"] / MiB, 1),
        peak_growth_mib=round(result["growth"] / MiB, 1), peak_over_arrays=round(ratio, 3),
        hwm_exact=result["exact"], features=result["fields"])
    print(f"\ncriteo prepare: {n:,} rows in {result['seconds']:.1f} s ({n / result['seconds']:,.0f} rows/s); "
          f"arrays {result['arrays'] / MiB:.1f} MiB, peak RSS growth {result['growth'] / MiB:.1f} MiB "
          f"= {ratio:.2f}x the arrays")
    assert ratio < 2.0, (f"preparation peaked {result['growth'] / MiB:.0f} MiB above its start, "
                         f"{ratio:.2f}x the {result['arrays'] / MiB:.0f} MiB of arrays it wrote")
    shutil.rmtree(work, ignore_errors=True)
