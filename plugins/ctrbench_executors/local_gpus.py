"""The `local-gpus` executor: one worker process per visible GPU of this machine, each pinned to its GPU.

Workers are the spawned processes of `ctrbench_executors.pool.run_in_pool` (shared with the `local` executor):
an initializer takes one GPU id off a queue and sets ``CUDA_VISIBLE_DEVICES`` to it before the worker touches
CUDA, and each worker's torch CPU threads are its share of the cores. Each worker runs
``ctrbench.runner.execute_job``: the same `run_one` as the `local` executor, into the same store.

This module imports neither torch nor ctrbench's runner at import time, so a spawned worker can set its
environment first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import ClassVar

from ctrbench.errors import SuiteError
from ctrbench.protocols import RunOne
from ctrbench.results import RunResult
from ctrbench.spec import RunSpec
from ctrbench_executors.pool import RETRIES_AFTER_POOL_CRASH, cpu_cores, run_in_pool

log = logging.getLogger(__name__)


def visible_devices() -> list[str]:
    """GPU ids visible to this process: ``CUDA_VISIBLE_DEVICES`` when set, else every CUDA device."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def assign_slots(devices: Sequence[str], workers_per_device: int, threads: int | None,
                 cores: int) -> tuple[list[str], int]:
    """The device of each worker (``workers_per_device`` per GPU) and each worker's torch thread count."""
    slots = [str(d) for d in devices for _ in range(workers_per_device)]
    return slots, max(1, threads or cores // max(1, len(slots)))


class LocalGpusExecutor:
    """One worker process per GPU of this machine; each run sees only its worker's GPU.

    Args:
        devices: GPU ids to use (default: ``CUDA_VISIBLE_DEVICES``, else every CUDA device). Giving ids on a
            machine without them runs pinned CPU workers, e.g. ``devices: [0, 1]`` with ``--device cpu``.
        workers_per_device: worker processes per GPU (small models leave a GPU mostly idle; 2–4 fill it).
        threads: torch CPU threads per worker (default: the cores divided among the workers).
    """

    remote: ClassVar[bool] = False  # runs on this machine: --device is checked here

    def __init__(self, devices: list[int | str] | None = None, workers_per_device: int = 1,
                 threads: int | None = None) -> None:
        if workers_per_device < 1:
            raise SuiteError(f"executor 'local-gpus': workers_per_device must be at least 1, got {workers_per_device}")
        self.devices = [str(d) for d in devices] if devices is not None else None
        self.workers_per_device = workers_per_device
        self.threads = threads

    def slots(self) -> tuple[list[str], int]:
        devices = self.devices if self.devices is not None else visible_devices()
        if not devices:
            raise SuiteError("executor 'local-gpus': no GPU is visible (CUDA_VISIBLE_DEVICES is empty or torch "
                             "sees no CUDA device); use the 'local' executor, or list devices to pin CPU workers")
        return assign_slots(devices, self.workers_per_device, self.threads, cpu_cores())

    def execute(self, specs: list[RunSpec], run_one: RunOne) -> Iterator[RunResult]:
        if not specs:
            return
        slots, threads = self.slots()
        job = run_one.job.for_worker(threads=threads, gpus=1)
        log.info("local-gpus: %d workers on GPUs %s, %d threads each", len(slots), ",".join(slots), threads)
        yield from run_in_pool(specs, job, run_one.store, len(slots), "local-gpus", pins=slots)


__all__ = ["RETRIES_AFTER_POOL_CRASH", "LocalGpusExecutor", "assign_slots", "cpu_cores", "visible_devices"]
