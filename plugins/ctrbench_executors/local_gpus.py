"""The `local-gpus` executor: one worker process per visible GPU of this machine, each pinned to its GPU.

Workers are ``concurrent.futures.ProcessPoolExecutor`` processes started with the *spawn* method (CUDA cannot
be used in a forked child); an initializer takes one GPU id off a queue and sets ``CUDA_VISIBLE_DEVICES`` to
it before the worker touches CUDA, and sets torch's CPU threads to the worker's share of the cores. Each
worker runs ``ctrbench.runner.execute_job``: the same `run_one` as the `local` executor, into the same store.

This module imports neither torch nor ctrbench's runner at import time, so a spawned worker can set its
environment first.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ctrbench.errors import DataError, SuiteError
from ctrbench.results import RunResult
from ctrbench.spec import RunSpec

log = logging.getLogger(__name__)

# After a worker dies, the pool cannot say which run killed it, and it takes the runs of the other workers
# down with it: each run in flight gets this many more attempts in a fresh pool before it is reported lost.
RETRIES_AFTER_POOL_CRASH = 1


def cpu_cores() -> int:
    """Cores this process may use (the affinity mask a scheduler set, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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


def _pin_worker(slots: Any) -> None:
    """ProcessPool initializer: this worker's GPU, before anything initialises CUDA."""
    device = slots.get()
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    log.debug("worker %d pinned to GPU %s", os.getpid(), device)


def _stop(pool: ProcessPoolExecutor) -> None:
    pool.shutdown(wait=False, cancel_futures=True)
    # concurrent.futures has no public way to stop running workers before Python 3.14 (terminate_workers)
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


class LocalGpusExecutor:
    """One worker process per GPU of this machine; each run sees only its worker's GPU.

    Args:
        devices: GPU ids to use (default: ``CUDA_VISIBLE_DEVICES``, else every CUDA device). Giving ids on a
            machine without them runs pinned CPU workers, e.g. ``devices: [0, 1]`` with ``--device cpu``.
        workers_per_device: worker processes per GPU (small models leave a GPU mostly idle; 2–4 fill it).
        threads: torch CPU threads per worker (default: the cores divided among the workers).
    """

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

    def execute(self, specs: list[RunSpec], run_one: Callable[[RunSpec], RunResult]) -> Iterator[RunResult]:
        from ctrbench.runner import execute_job, lost_run

        if not specs:
            return
        slots, threads = self.slots()
        job = run_one.job.for_worker(threads=threads, gpus=1)  # type: ignore[attr-defined]
        store = run_one.session.store  # type: ignore[attr-defined]
        log.info("local-gpus: %d workers on GPUs %s, %d threads each", len(slots), ",".join(slots), threads)
        ctx = multiprocessing.get_context("spawn")
        pending, strikes = list(specs), {s.run_id: 0 for s in specs}
        while pending:
            queue = ctx.Queue()
            for device in slots:
                queue.put(device)
            pool = ProcessPoolExecutor(len(slots), mp_context=ctx, initializer=_pin_worker, initargs=(queue,))
            futures: dict[Future[RunResult], RunSpec] = {pool.submit(execute_job, job, s): s for s in pending}
            pending = []
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in done:
                        spec = futures.pop(fut)
                        try:
                            yield fut.result()
                        except BrokenProcessPool:
                            started = (store.attempt(spec) or {}).get("invocation") == job.invocation
                            if not started:  # queued when the pool broke: not its fault
                                pending.append(spec)
                            elif strikes[spec.run_id] < RETRIES_AFTER_POOL_CRASH:
                                strikes[spec.run_id] += 1
                                pending.append(spec)
                            else:
                                yield lost_run(spec, "a local-gpus worker process exited")
                        except DataError:
                            raise
                        except Exception as exc:  # the worker raised outside run_one's own handling
                            yield lost_run(spec, f"{type(exc).__name__}: {exc}")
            except BaseException:  # Ctrl-C or a DataError: stop the workers, their runs stay unfinished
                _stop(pool)
                raise
            pool.shutdown(wait=True)
            if pending:
                log.warning("local-gpus: a worker died; restarting the pool for %d runs", len(pending))
