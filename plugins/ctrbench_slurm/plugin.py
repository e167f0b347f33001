"""Registers the `slurm` executor. submitit is imported only when a suite runs on it."""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench_slurm.executor import SlurmExecutor


@hookimpl
def ctrbench_register_executors(register) -> None:
    register("slurm", SlurmExecutor, summary="each run a SLURM job (one job array per suite), through submitit")
