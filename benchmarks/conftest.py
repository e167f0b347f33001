"""Options and shared fixtures of the speed benchmarks (not collected by the main suite: testpaths = tests).

Every option has an environment-variable twin (``--bench-rounds`` ↔ ``CTRBENCH_BENCH_ROUNDS``) so the same
settings work through ``benchmarks/run.sh`` and CI. Defaults are the full measurement; see README.md for a
quick configuration.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from ctrbench.data.cache import cache_root
from ctrbench.data.types import CTRData

OPTIONS: dict[str, tuple[str, str]] = {  # option → (default, help)
    "datasets": ("synthetic,movielens-100k", "datasets to train on"),
    "models": ("dnn,deepfm,dcn,dcnv2", "benchmark models (reference_impls.MODELS; the overhead regime: "
                                        "lr,fm,deepfm-256-128,dcn-2x-128-128)"),
    "batch-sizes": ("256,1024", "training batch sizes"),
    "impls": ("ctrbench,deepctr,fuxictr", "implementations to compare"),
    "synthetic-rows": ("200000", "rows of the synthetic dataset (8 fields, 10,000 values each, split 8:1:1)"),
    "rounds": ("3", "timed one-epoch rounds per benchmark (the median is reported)"),
    "warmup": ("1", "untimed one-epoch rounds before the timed ones"),
    "threads": ("0", "torch.set_num_threads for the whole run; 0 keeps torch's default"),
    "device": ("cpu", "cpu, cuda or auto"),
    "seed": ("0", "seed of every model's initialisation and batch order"),
    "auc-seeds": ("1", "test AUC is the mean over this many seeds (seed, seed+1, ...; the extra fits are untimed)"),
    "memmap-rows": ("200000", "rows of the memory-mapped synthetic dataset in test_memmap (full: 10000000)"),
    "cache": ("", "dataset cache directory (default: $CTRBENCH_CACHE or ~/.cache/ctrbench)"),
}


def _env(name: str) -> str:
    return "CTRBENCH_BENCH_" + name.upper().replace("-", "_")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ctrbench-bench", "ctrbench speed benchmarks")
    for name, (default, text) in OPTIONS.items():
        group.addoption(f"--bench-{name}", default=os.environ.get(_env(name), default),
                        help=f"{text} (env {_env(name)}; default {default or 'unset'})")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@dataclass
class BenchConfig:
    datasets: list[str]
    models: list[str]
    batch_sizes: list[int]
    impls: list[str]
    synthetic_rows: int
    rounds: int
    warmup: int
    threads: int
    device: str
    seed: int
    auc_seeds: int
    memmap_rows: int
    cache: Path
    _data: dict[str, CTRData] = field(default_factory=dict)
    _flops: dict[tuple[str, str, int], float] = field(default_factory=dict)
    _matmul: float | None = None

    @classmethod
    def from_pytest(cls, config: pytest.Config) -> BenchConfig:
        get = lambda name: config.getoption("bench_" + name.replace("-", "_"))  # noqa: E731
        return cls(datasets=_csv(get("datasets")), models=_csv(get("models")),
                   batch_sizes=[int(b) for b in _csv(get("batch-sizes"))], impls=_csv(get("impls")),
                   synthetic_rows=int(get("synthetic-rows")), rounds=int(get("rounds")), warmup=int(get("warmup")),
                   threads=int(get("threads")), device=get("device"), seed=int(get("seed")),
                   auc_seeds=max(1, int(get("auc-seeds"))),
                   memmap_rows=int(get("memmap-rows")), cache=Path(get("cache")) if get("cache") else cache_root())

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self).items() if not k.startswith("_")}

    # -- datasets ------------------------------------------------------------------------------------
    def dataset_config(self, name: str) -> dict[str, Any]:
        if name == "synthetic":
            return {"num_samples": self.synthetic_rows, "num_fields": 8, "vocab_size": 10_000, "seed": 0,
                    "history_length": 0}
        if name == "movielens-100k":
            return {"history_length": 0, "download_timeout": 10.0}
        raise pytest.UsageError(f"--bench-datasets: unknown dataset '{name}' (synthetic, movielens-100k)")

    # -- the arithmetic limit (roofline.py) ------------------------------------------------------------
    def matmul_rate(self) -> float:
        """The process's float32 matmul FLOP/s, measured once per session (at the run's thread count)."""
        if self._matmul is None:
            from roofline import matmul_flops_per_second

            self._matmul = matmul_flops_per_second()
        return self._matmul

    def flops_per_sample(self, dataset: str, model: str, batch_size: int) -> float:
        """Matmul FLOPs of one training step per sample of the ctrbench build of ``model`` (the three builds
        are the same model: ``test_same_model_size``)."""
        key = (dataset, model, batch_size)
        if key not in self._flops:
            from reference_impls import EMBED_DIM, MODELS
            from roofline import train_flops_per_sample

            from ctrbench.engine import DeviceData
            from ctrbench.plugins import load_plugins

            data = self.data(dataset)
            spec = MODELS[model]
            net = load_plugins().registry("ctr").get(spec.ctr).create(fields=data.fields, embed_dim=EMBED_DIM,
                                                                      **spec.ctrbench_config())
            rows = torch.as_tensor(data.splits["train"][:batch_size])
            self._flops[key] = train_flops_per_sample(net, DeviceData(data, torch.device("cpu")).batch(rows),
                                                      batch_size)
        return self._flops[key]

    def data(self, name: str) -> CTRData:
        """The dataset, loaded once per session (skips the tests when it cannot be obtained)."""
        if name not in self._data:
            from ctrbench.errors import CtrbenchError
            from ctrbench.plugins import load_plugins

            entry = load_plugins().registry("datasets").get(name)
            try:
                self._data[name] = entry.create(**self.dataset_config(name)).load(self.cache)
            except CtrbenchError as exc:
                pytest.skip(f"dataset {name} unavailable: {exc}")
        return self._data[name]


_START: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    cfg = BenchConfig.from_pytest(config)
    config._ctrbench_bench = cfg  # type: ignore[attr-defined]
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    _START.update(time=time.time(), loadavg=_loadavg())


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


@pytest.fixture(scope="session")
def bench(pytestconfig: pytest.Config) -> BenchConfig:
    return pytestconfig._ctrbench_bench  # type: ignore[attr-defined]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The throughput grid: dataset × model × batch size × implementation, the implementation innermost so
    the three implementations of one configuration run back to back (same machine state for the ratio)."""
    if "impl" not in metafunc.fixturenames:
        return
    cfg: BenchConfig = metafunc.config._ctrbench_bench  # type: ignore[attr-defined]
    grid = [(d, m, b, i) for d in cfg.datasets for m in cfg.models for b in cfg.batch_sizes for i in cfg.impls]
    metafunc.parametrize(("dataset", "model", "batch_size", "impl"), grid,
                         ids=[f"{d}-{m}-b{b}-{i}" for d, m, b, i in grid])


# -- provenance in the JSON (pytest-benchmark hooks) ----------------------------------------------------

def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from reference_impls import versions

    cfg: BenchConfig = config._ctrbench_bench  # type: ignore[attr-defined]
    machine_info["ctrbench_bench"] = {
        "config": cfg.as_dict(),
        "versions": versions(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_at_start": _START.get("loadavg"),
        "loadavg_at_end": _loadavg(),
        "wall_seconds": round(time.time() - _START.get("time", time.time()), 1),
        "memory_measure": "peak RSS growth: VmHWM after the round minus VmRSS before it (after gc + malloc_trim, "
                          "high-water mark reset via /proc/self/clear_refs), plus the peak summed USS of child "
                          "processes (DataLoader workers); see benchmarks/peakmem.py",
    }


def pytest_benchmark_generate_commit_info(config: pytest.Config) -> dict[str, Any] | None:
    """``CTRBENCH_BENCH_NO_GIT=1`` records no commit (machines without git); otherwise pytest-benchmark's own."""
    if os.environ.get("CTRBENCH_BENCH_NO_GIT"):
        return {"id": None, "dirty": None, "project": "ctrbench", "note": "CTRBENCH_BENCH_NO_GIT set"}
    return None


@pytest.fixture
def run_rounds(benchmark: Any, bench: BenchConfig) -> Callable[..., list[int]]:
    """``run_rounds(release, build, target)`` → peak RSS growth (bytes) of each timed round.

    Per round, untimed: ``release()`` drops the previous round's model, the memory baseline is taken, and
    ``build()`` makes a fresh model; then ``target()`` is timed; the peak is read in the (untimed) teardown.
    So the fresh model counts toward the round's peak memory but not toward its time.
    """
    from peakmem import PeakRSS

    def run(release: Callable[[], None], build: Callable[[], None], target: Callable[[], None]) -> list[int]:
        mem = PeakRSS()
        peaks: list[int] = []

        def setup() -> None:
            release()
            mem.start()
            build()

        def teardown() -> None:
            peaks.append(mem.stop())

        benchmark.pedantic(target, setup=setup, teardown=teardown, rounds=bench.rounds, warmup_rounds=bench.warmup,
                           iterations=1)
        benchmark.extra_info["memory_exact_hwm"] = mem.exact
        return peaks[bench.warmup:] or peaks

    return run
