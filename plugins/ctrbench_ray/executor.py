"""Each run is a Ray task that calls ``ctrbench.runner.execute_job``: the same `run_one` as every executor,
writing to the same store, which therefore has to be on a filesystem every Ray node sees (docs/scaling.md).

Ray is imported inside `RayExecutor.execute`, never at plugin import, so ctrbench works without it and a
suite that asks for it gets a one-line error naming the extra to install.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from ctrbench.errors import CtrbenchError, DataError, SuiteError
from ctrbench.protocols import RunOne
from ctrbench.results import RunResult
from ctrbench.spec import RunSpec

log = logging.getLogger(__name__)

MISSING = "executor 'ray' needs the ray package, which is not installed: pip install ctrbench[ray]"


class RayExecutor:
    """Runs every spec as a Ray task with its own CPU (and GPU) share.

    Args:
        address: the cluster to connect to (``auto``, ``ray://head:10001``…). Default: ``RAY_ADDRESS`` if set,
            else a local Ray instance on this machine, started for the suite and stopped after it.
        num_cpus: CPUs per run; also the run's torch thread count.
        num_gpus: GPUs per run (fractions share a GPU: 0.5 = two runs per GPU). 0 runs on CPU.
        memory_gb: memory reserved per run, for Ray's scheduler (not a hard limit).
        max_retries: times Ray reruns a task whose worker died (node lost, killed); 0 reports it as failed and
            leaves it for the next ``ctrbench run``.
        resources: custom Ray resources per run, e.g. ``{"a100": 1}``.
        runtime_env: Ray runtime environment for the workers when this executor connects (env vars, pip…).
    """

    remote: ClassVar[bool] = True  # runs on other machines: --device is resolved there, not where `ctrbench run` runs

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 memory_gb: float | None = None, max_retries: int = 0, resources: dict[str, float] | None = None,
                 runtime_env: dict[str, Any] | None = None) -> None:
        if importlib.util.find_spec("ray") is None:
            raise CtrbenchError(MISSING)
        if num_cpus <= 0 or num_gpus < 0 or max_retries < 0:
            raise SuiteError(f"executor 'ray': num_cpus must be > 0, num_gpus and max_retries >= 0 "
                             f"(got {num_cpus}, {num_gpus}, {max_retries})")
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.memory_gb, self.max_retries = memory_gb, max_retries
        self.resources, self.runtime_env = resources, runtime_env

    def execute(self, specs: list[RunSpec], run_one: RunOne) -> Iterator[RunResult]:
        from ctrbench.runner import execute_job, lost_run

        if not specs:
            return
        try:
            import ray
        except ImportError as exc:
            raise CtrbenchError(f"{MISSING} ({exc})") from None
        job = run_one.job.for_worker(threads=self.num_cpus, gpus=self.num_gpus)
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=self.address, runtime_env=self.runtime_env, include_dashboard=False,
                         log_to_driver=False)
            except Exception as exc:  # no cluster at the address, version mismatch…
                raise CtrbenchError(f"executor 'ray': cannot start or reach a Ray cluster "
                                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                                   "max_retries": self.max_retries, "retry_exceptions": False}
        if self.memory_gb:
            options["memory"] = int(self.memory_gb * 2**30)
        if self.resources:
            options["resources"] = dict(self.resources)
        task = ray.remote(execute_job).options(**options)
        refs = {task.remote(job, spec): spec for spec in specs}
        log.info("ray: %d runs submitted (%s CPUs, %s GPUs each)", len(refs), self.num_cpus, self.num_gpus)
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    spec = refs.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # execute_job raised: DataError or a bug
                        cause = getattr(exc, "cause", None) or exc
                        if isinstance(cause, DataError):
                            raise DataError(str(cause)) from None
                        yield lost_run(spec, f"{type(cause).__name__}: {cause}")
                    except ray.exceptions.RayError as exc:  # worker or node died, task cancelled
                        yield lost_run(spec, f"{type(exc).__name__}: {exc}")
        finally:
            for ref in refs:  # Ctrl-C, a DataError: stop what is queued or running
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()
