"""The `local` executor (runs specs one after another in this process) and `local-gpus`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ctrbench import hookimpl
from ctrbench.results import RunResult
from ctrbench.spec import RunSpec
from ctrbench_executors.local_gpus import LocalGpusExecutor


class LocalExecutor:
    """Sequential, in-process. Ctrl-C propagates after the current run; finished runs are stored."""

    def execute(self, specs: list[RunSpec], run_one: Callable[[RunSpec], RunResult]) -> Iterator[RunResult]:
        for spec in specs:
            yield run_one(spec)


@hookimpl
def ctrbench_register_executors(register) -> None:
    register("local", LocalExecutor, summary="sequential, in this process")
    register("local-gpus", LocalGpusExecutor,
             summary="one worker process per visible GPU, each pinned with CUDA_VISIBLE_DEVICES")
