"""Registers the `ray` executor. Ray itself is imported only when a suite runs on it."""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench_ray.executor import RayExecutor


@hookimpl
def ctrbench_register_executors(register) -> None:
    register("ray", RayExecutor, summary="each run a Ray task (num_cpus/num_gpus per run), local or on a cluster")
