"""The `local` executor (parallel worker processes on this machine's CPU cores, or in this process) and
`local-gpus`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import ClassVar

from ctrbench import hookimpl
from ctrbench.errors import SuiteError
from ctrbench.hookspecs import Register
from ctrbench.protocols import RunOne
from ctrbench.results import RunResult
from ctrbench.spec import RunSpec
from ctrbench_executors.local_gpus import LocalGpusExecutor
from ctrbench_executors.pool import cpu_cores, run_in_pool

log = logging.getLogger(__name__)


class LocalExecutor:
    """Runs on this machine's CPU: ``workers`` spawned worker processes with ``threads`` torch threads each
    (one by default), or, with one worker (or one run to do), one run after another in this process.

    Small CTR models do not use several cores well, so a core per run, in parallel, finishes a grid sooner
    than every core on one run at a time. Results come back as runs finish, in any order.

    Args:
        workers: worker processes; ``"auto"`` (default): one per core this process may use. ``1`` runs in
            this process, with ``--threads`` threads and the trainer's progress bar (as does a single run, and
            a session whose device is a GPU when ``workers`` is ``"auto"``).
        threads: torch CPU threads per worker process (default: the session's, ``--threads``, which is 1
            unless set); runs in this process use the session's.
    """

    remote: ClassVar[bool] = False  # runs on this machine: --device is checked here

    def __init__(self, workers: int | str = "auto", threads: int | None = None) -> None:
        if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise SuiteError(f"executor 'local': workers must be a whole number of at least 1 or 'auto', "
                             f"got {workers!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise SuiteError(f"executor 'local': threads must be a whole number of at least 1, got {threads!r}")
        self.workers = workers
        self.threads = threads

    def worker_count(self) -> int:
        return cpu_cores() if self.workers == "auto" else int(self.workers)

    def execute(self, specs: list[RunSpec], run_one: RunOne | Callable[[RunSpec], RunResult]) -> Iterator[RunResult]:
        """``run_one`` is the `RunOne` of `run_suite`; a bare callable (tests) runs every spec in this process."""
        workers = self._parallel_workers(specs, run_one)
        if workers <= 1 or not isinstance(run_one, RunOne):  # Ctrl-C propagates after the current run
            for spec in specs:
                yield run_one(spec)
            return
        job = run_one.job.for_worker(threads=self.threads or run_one.job.threads or 1, gpus=0)
        log.info("local: %d worker processes, %d threads each", workers, job.threads)
        yield from run_in_pool(specs, job, run_one.store, workers, "local")

    def _parallel_workers(self, specs: list[RunSpec], run_one: RunOne | Callable[[RunSpec], RunResult]) -> int:
        """How many worker processes to start; 1 (or less) runs in this process."""
        workers = min(self.worker_count(), len(specs))
        if workers <= 1 or not isinstance(run_one, RunOne):
            return 1
        if run_one.device.type != "cpu":
            if self.workers == "auto":  # one process on the GPU, as before; local-gpus runs one per GPU
                return 1
            raise SuiteError(f"executor 'local': workers runs processes on the CPU, but the device is "
                             f"{run_one.device}: use --device cpu, or the local-gpus executor")
        stuck = run_one.unshippable_plugins()
        if stuck:
            log.warning("local: plugin(s) %s were registered in this process and cannot be imported by worker "
                        "processes; running in this process instead", ", ".join(stuck))
            return 1
        return workers


@hookimpl
def ctrbench_register_executors(register: Register) -> None:
    register("local", LocalExecutor,
             summary="parallel worker processes on this machine's CPU cores (one thread each); "
                     "workers: 1 runs in-process", quick_config={"workers": 1})
    register("local-gpus", LocalGpusExecutor,
             summary="one worker process per visible GPU, each pinned with CUDA_VISIBLE_DEVICES",
             quick_config={"devices": ["0"]})  # one pinned worker; a CPU worker where there is no GPU
