"""The worker pool behind the `local` and `local-gpus` executors: specs run in worker processes of this machine.

`run_in_pool` starts ``workers`` ``concurrent.futures.ProcessPoolExecutor`` processes with the *spawn* method
(CUDA cannot be used in a forked child, and a fresh interpreter inherits no torch thread pool), sends each
spec to a free one, where ``ctrbench.runner.execute_job(job, spec)`` runs it with the same `run_one` as the
in-process executor, into the same store, and yields the results as runs finish, in any order.

- Threads: each worker gets ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` = ``job.threads`` in its environment from
  the start (before its interpreter imports torch), and the job's ``threads`` makes the worker's `Session` call
  ``torch.set_num_threads`` before any run.
- Pinning: with ``pins`` (one ``CUDA_VISIBLE_DEVICES`` value per worker, `local-gpus`), each worker takes one
  off a queue in its initializer, before anything in it initialises CUDA.
- A worker that dies (killed, out of memory) breaks the whole pool, and the pool cannot say which run killed
  it: each run that had started gets `RETRIES_AFTER_POOL_CRASH` more attempts in a fresh pool, runs still queued
  are resubmitted, and a run that keeps dying is reported with ``lost_run`` (not stored). When the workers die
  before any run starts (a worker that cannot start), every run counts an attempt, so this ends too.
- A `DataError` stops the suite; so do Ctrl-C and closing the generator. Either way the workers are stopped
  and their runs stay unfinished in the store (the next ``ctrbench run`` runs them again).

This module imports neither torch nor ctrbench's runner at import time: a spawned worker imports it to run
the initializer, before it imports torch.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ctrbench.errors import DataError
from ctrbench.results import RunResult
from ctrbench.spec import RunSpec

log = logging.getLogger(__name__)

# After a worker dies, the pool cannot say which run killed it, and it takes the runs of the other workers
# down with it: each run in flight gets this many more attempts in a fresh pool before it is reported lost.
RETRIES_AFTER_POOL_CRASH = 1

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_cores() -> int:
    """Cores this process may use (the affinity mask a scheduler set, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def init_worker(threads: int, pins: Any = None) -> None:
    """ProcessPool initializer: the worker's thread count, and its GPU (one id off the ``pins`` queue)."""
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    if pins is not None:
        device = pins.get()
        os.environ["CUDA_VISIBLE_DEVICES"] = device
        log.debug("worker %d pinned to GPU %s", os.getpid(), device)


@contextlib.contextmanager
def _child_environment(threads: int) -> Iterator[None]:
    """The thread variables in this process's environment while it spawns workers, so that a worker's
    OpenMP runtime starts with them even when its interpreter imports torch before the initializer runs
    (spawn re-imports the parent's main module first: a script that imports torch at its top)."""
    saved = {name: os.environ.get(name) for name in THREAD_ENV}
    os.environ.update({name: str(threads) for name in THREAD_ENV})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and terminate the workers (their runs stay unfinished in the store)."""
    # concurrent.futures has no public way to stop running workers before Python 3.14 (terminate_workers);
    # the processes are read before shutdown(), which forgets them
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    # the executor's manager thread reaps workers too: a join() that loses that race returns at once with the
    # exit code still unset (waitpid gives ECHILD), so poll until the winner has recorded it
    deadline = time.monotonic() + 5
    for proc in procs:
        while proc.is_alive() and time.monotonic() < deadline:
            proc.join(0.05)
        if proc.is_alive():
            proc.kill()
            proc.join(1)


def run_in_pool(specs: Sequence[RunSpec], job: Any, store: Any, workers: int, name: str,
                pins: Sequence[str] | None = None) -> Iterator[RunResult]:
    """Run ``specs`` in ``workers`` spawned processes (``execute_job(job, spec)`` in each); yield results as
    runs finish.

    ``job`` is the `RunJob` for the workers (``run_one.job.for_worker(...)``), ``store`` the `Store` it writes
    (to tell a run that had started when the pool broke from one still queued), ``name`` the executor's name
    for messages, ``pins`` one ``CUDA_VISIBLE_DEVICES`` value per worker (then ``workers`` is ``len(pins)``).
    """
    from ctrbench.runner import execute_job, lost_run

    if pins is not None:
        workers = len(pins)
    ctx = multiprocessing.get_context("spawn")
    pending, strikes = list(specs), {s.run_id: 0 for s in specs}
    while pending:
        queue = None
        if pins is not None:
            queue = ctx.Queue()
            for device in pins:
                queue.put(device)
        pool = ProcessPoolExecutor(min(workers, len(pending)), mp_context=ctx, initializer=init_worker,
                                   initargs=(job.threads, queue))
        try:
            with _child_environment(job.threads):  # workers start on submit (spawn starts them on demand)
                futures: dict[Future[RunResult], RunSpec] = {pool.submit(execute_job, job, s): s for s in pending}
            pending, broken, finished = [], [], 0
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    spec = futures.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken.append(spec)
                        continue
                    except DataError:
                        raise
                    except Exception as exc:  # the worker raised outside run_one's own handling
                        result = lost_run(spec, f"{type(exc).__name__}: {exc}")
                    finished += 1
                    yield result
            started = {s.run_id for s in broken if (store.attempt(s) or {}).get("invocation") == job.invocation}
            if broken and not started and not finished:  # the workers die before any run: each run pays
                started = {s.run_id for s in broken}
                reason = f"{name} worker processes exited before running anything (see the log above)"
            else:
                reason = f"a {name} worker process exited"
            for spec in broken:
                if spec.run_id not in started:  # queued when the pool broke: not its fault
                    pending.append(spec)
                elif strikes[spec.run_id] < RETRIES_AFTER_POOL_CRASH:
                    strikes[spec.run_id] += 1
                    pending.append(spec)
                else:
                    yield lost_run(spec, reason)
        except BaseException:  # Ctrl-C, a DataError, the consumer gone: stop the workers, their runs stay unfinished
            stop(pool)
            raise
        pool.shutdown(wait=True)
        if pending:
            log.warning("%s: a worker died; restarting the pool for %d runs", name, len(pending))


__all__ = ["RETRIES_AFTER_POOL_CRASH", "cpu_cores", "init_worker", "run_in_pool", "stop"]
