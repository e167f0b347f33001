"""Each run is a SLURM job that calls ``ctrbench.runner.execute_job`` on a compute node: the same `run_one`
as every executor, writing to the same store, which therefore has to be on a filesystem the nodes share.

submitit pickles the job and its spec into ``folder`` (default ``<store>/_slurm``), submits one job array for
the suite and reads the results back; its logs per job are there too. ``cluster: local`` runs the same jobs
as processes on this machine (submitit's ``LocalExecutor``): how the tests run it, and a way to try a suite's
SLURM settings without a cluster. submitit is imported inside `SlurmExecutor.execute`, never at plugin import.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ctrbench.errors import CtrbenchError, DataError, SuiteError
from ctrbench.protocols import RunOne
from ctrbench.results import RunResult
from ctrbench.spec import RunSpec

log = logging.getLogger(__name__)

MISSING = "executor 'slurm' needs the submitit package, which is not installed: pip install ctrbench[slurm]"
CLUSTERS = ("slurm", "local")


def minutes(value: int | float | str) -> int:
    """A SLURM time limit as whole minutes: 90, "90", "1:30:00", "2-00:00:00"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(value)
        return math.ceil(value)
    text = str(value).strip()
    days, _, rest = text.rpartition("-")
    parts = [float(p) for p in rest.split(":")]
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
        raise ValueError(value)
    if len(parts) == 1:
        total = parts[0]  # plain minutes, as sbatch --time reads it
    else:
        h, m, s = ([0.0] * (3 - len(parts)) + parts) if len(parts) == 3 else (0.0, *parts)
        total = h * 60 + m + s / 60
    total += float(days or 0) * 24 * 60
    if total <= 0:
        raise ValueError(value)
    return math.ceil(total)


def run_job(job: Any, spec: RunSpec) -> RunResult | DataError:
    """What a SLURM job runs. A `DataError` is returned, not raised: submitit would hand it back as a
    traceback string, and the suite must stop on it as with the other executors."""
    from ctrbench.runner import execute_job

    try:
        return execute_job(job, spec)
    except DataError as exc:
        return exc


class SlurmExecutor:
    """Runs every spec as a SLURM job with its own CPUs, GPUs and time limit.

    Args:
        partition: SLURM partition (``--partition``); default: the cluster's default partition.
        time: time limit per run, minutes or ``"H:MM:SS"`` / ``"D-HH:MM:SS"``. A run over it is killed, left
            unfinished in the store, and run again by the next ``ctrbench run``.
        gpus: GPUs per run (``--gpus-per-node``); 0 runs on CPU.
        cpus: CPUs per run (``--cpus-per-task``); also the run's torch thread count.
        mem_gb: memory per run (``--mem``), default: the partition's.
        account, qos, constraint: ``--account``, ``--qos``, ``--constraint``.
        parallelism: at most this many runs at once (``--array=…%N``).
        setup: shell lines run before each job (``module load cuda``, ``source venv/bin/activate``).
        additional: more ``#SBATCH`` options, e.g. ``{exclude: "node07"}``.
        folder: where submitit keeps pickles and logs (default ``<store>/_slurm``), on the shared filesystem.
        cluster: ``slurm``, or ``local`` to run the jobs as processes on this machine (testing).
        poll_seconds: how often job states are checked.
    """

    remote: ClassVar[bool] = True  # runs on other machines: --device is resolved there, not where `ctrbench run` runs

    def __init__(self, partition: str | None = None, time: int | str = 60, gpus: int = 0, cpus: int = 1,
                 mem_gb: float | None = None, account: str | None = None, qos: str | None = None,
                 constraint: str | None = None, parallelism: int = 64, setup: list[str] | None = None,
                 additional: dict[str, Any] | None = None, folder: str | None = None, cluster: str = "slurm",
                 poll_seconds: float = 5.0) -> None:
        if importlib.util.find_spec("submitit") is None:
            raise CtrbenchError(MISSING)
        if cluster not in CLUSTERS:
            raise SuiteError(f"executor 'slurm': cluster must be one of {', '.join(CLUSTERS)}, got {cluster!r}")
        try:
            self.timeout_min = minutes(time)
        except (TypeError, ValueError):
            raise SuiteError(f"executor 'slurm': time must be minutes or H:MM:SS / D-HH:MM:SS, got {time!r}") from None
        if cpus < 1 or gpus < 0 or parallelism < 1:
            raise SuiteError(f"executor 'slurm': cpus and parallelism must be >= 1, gpus >= 0 "
                             f"(got {cpus}, {parallelism}, {gpus})")
        self.partition, self.gpus, self.cpus, self.mem_gb = partition, gpus, cpus, mem_gb
        self.account, self.qos, self.constraint = account, qos, constraint
        self.parallelism, self.setup, self.additional = parallelism, list(setup or []), dict(additional or {})
        self.folder, self.cluster, self.poll_seconds = folder, cluster, poll_seconds

    def parameters(self, name: str) -> dict[str, Any]:
        """submitit's AutoExecutor parameters (``slurm_*`` apply on SLURM, ``local_*`` on this machine)."""
        return {"name": name, "timeout_min": self.timeout_min, "cpus_per_task": self.cpus,
                "gpus_per_node": self.gpus, "nodes": 1, "tasks_per_node": 1, "mem_gb": self.mem_gb,
                "slurm_partition": self.partition, "slurm_account": self.account, "slurm_qos": self.qos,
                "slurm_constraint": self.constraint, "slurm_array_parallelism": self.parallelism,
                "slurm_setup": self.setup or None, "slurm_additional_parameters": self.additional or None,
                "local_setup": self.setup or None}

    def execute(self, specs: list[RunSpec], run_one: RunOne) -> Iterator[RunResult]:
        from ctrbench.runner import lost_run

        if not specs:
            return
        try:
            import submitit
        except ImportError as exc:
            raise CtrbenchError(f"{MISSING} ({exc})") from None
        job = run_one.job.for_worker(threads=self.cpus, gpus=self.gpus)
        folder = Path(self.folder).resolve() if self.folder else Path(job.store_root) / "_slurm"
        try:
            executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
            executor.update_parameters(**self.parameters(f"ctrbench-{job.suite.name}"))
        except Exception as exc:  # submitit: no sbatch on this machine, a parameter SLURM does not know…
            raise CtrbenchError(f"executor 'slurm': {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        queue = list(reversed(specs))
        running: dict[Any, RunSpec] = {}
        if self.cluster == "slurm":  # one job array; SLURM queues it and keeps `parallelism` running
            for j, spec in zip(executor.map_array(run_job, [job] * len(queue), specs), specs, strict=True):
                running[j] = spec
            queue = []
            log.info("slurm: job array %s with %d runs submitted", next(iter(running)).job_id, len(running))
        try:
            while queue or running:
                while queue and len(running) < self.parallelism:  # the local cluster has no queue of its own
                    spec = queue.pop()
                    running[executor.submit(run_job, job, spec)] = spec
                finished = [j for j in running if j.done()]
                if not finished:
                    time.sleep(self.poll_seconds)
                for j in finished:
                    spec = running.pop(j)
                    try:
                        out = j.result()
                    except Exception as exc:  # killed, timed out, node failure, or the job could not start
                        yield lost_run(spec, f"SLURM job {j.job_id}: {type(exc).__name__}: {exc}")
                        continue
                    if isinstance(out, DataError):
                        raise DataError(str(out))
                    yield out
        finally:
            for j in running:  # Ctrl-C, a DataError: cancel what is queued or running
                j.cancel(check=False)
