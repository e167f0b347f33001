"""Test-only plugin and worker functions for tests/test_executors.py (no tests here).

Workers of the multi-process executors import this module by name (``RunJob`` ships in-process plugins by
module name and ``sys.path`` entry), so it holds only what a worker needs: two methods that wrap the
built-in ``ctr`` method, the body of the stage-lock test's processes, a long task, and a worker initializer that dies.

- ``crash-once``: the first run to reach it, in any process, kills its own process with ``os._exit``
  (as an OOM kill or a lost node would), after ``run_one`` has started the run in the store; every later run
  is the plain ``ctr`` method. "Once" is a file created with O_EXCL, so it holds across processes.
- ``rendezvous``: each run waits until ``parties`` distinct processes have reached it, which proves that
  the executor runs that many at once, and makes each of them run at least one spec. Each process's file
  records its ``OMP_NUM_THREADS`` and torch thread count. With ``stage_counter``, every run then asks for one
  shared stage (``ctx.stage``), whose computation appends the process id to that file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ctrbench import hookimpl


def _ctr(ctx):
    return ctx.plugins.registry("methods").get("ctr").create().run(ctx)


class CrashOnce:
    def __init__(self, marker: str = "") -> None:
        self.marker = marker

    def run(self, ctx):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return _ctr(ctx)
        os.write(fd, f"{ctx.spec.run_id} {os.getpid()}\n".encode())
        os.close(fd)
        os._exit(3)


class Rendezvous:
    def __init__(self, dir: str = "", parties: int = 2, timeout: float = 120.0, stage_counter: str = "") -> None:
        self.dir, self.parties, self.timeout, self.stage_counter = Path(dir), parties, timeout, stage_counter

    def run(self, ctx):
        import torch

        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / str(os.getpid())).write_text(f"{os.environ.get('OMP_NUM_THREADS')} {torch.get_num_threads()}")
        deadline = time.monotonic() + self.timeout
        while len(list(self.dir.iterdir())) < self.parties:
            if time.monotonic() > deadline:
                raise RuntimeError(f"rendezvous: only {len(list(self.dir.iterdir()))} of {self.parties} processes")
            time.sleep(0.05)
        if self.stage_counter:
            ctx.stage("shared", {"for": "every run"}, self._compute_stage)
        return _ctr(ctx)

    def _compute_stage(self, out_dir: Path) -> None:
        with open(self.stage_counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)  # long enough for the other worker, released by the rendezvous too, to ask meanwhile
        (out_dir / "weights").write_text("w")


@hookimpl
def ctrbench_register_methods(register) -> None:
    register("crash-once", CrashOnce, summary="test only: kills its process the first time")
    register("rendezvous", Rendezvous, summary="test only: waits for N processes to run at once")


def busy(mark: str, seconds: float) -> None:
    """A long task that says when it has started."""
    Path(mark).touch()
    time.sleep(seconds)


def exit_at_start(threads, pins=None) -> None:
    """Stands in for the pool's worker initializer: a worker that dies before it can run anything (appends its
    pid to the file named by CTRBENCH_TEST_STARTS first)."""
    with open(os.environ["CTRBENCH_TEST_STARTS"], "a") as f:
        f.write(f"{os.getpid()}\n")
    os._exit(4)


def stage_process(stage_root: str, counter: str, ready_dir: str, out: str) -> None:
    """One of the processes asking for the same stage: wait for the other, then ask."""
    from ctrbench.context import RunContext

    ready = Path(ready_dir)
    (ready / str(os.getpid())).touch()
    while len(list(ready.iterdir())) < 2:
        time.sleep(0.01)

    def pretrain(out_dir: Path) -> None:
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.5)  # long enough for the other process to find the stage missing
        (out_dir / "weights").write_text("w")

    ctx = RunContext(None, None, None, None, None, None, Path(stage_root))  # stage() needs only stage_root
    path = ctx.stage("pretrain", {"data": "x", "seed": 1}, pretrain)
    Path(out).write_text(str(path))
