"""What ``ctrbench run`` draws (the library itself never prints).

- `SuiteProgress`: one live view of a suite's runs, queued / running / done / failed, with the worker process
  (host:pid) of each running run, its elapsed time and its ETA. It is the same for every executor: runs report
  their start by the ``running.json`` marker `run_one` writes into the store (wherever they run: this process,
  a local CPU or GPU worker, a Ray or SLURM node), and their end by the result the executor yields.
- `RichReporter`: the trainer's per-epoch bar for runs in this process, drawn inside the live view.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ctrbench.results import RunResult
from ctrbench.spec import RunSpec
from ctrbench.store import Store

MAX_ROWS = 20  # running runs listed one per line; the rest are counted


class RichReporter:
    """One transient bar per epoch; silent when stderr is not a terminal (CI logs stay readable).

    On its own it draws its bar itself; inside a `SuiteProgress` (``embedded``) the suite view draws it."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True,
                                 disable=not console.is_terminal)
        self.embedded = False
        self._task: int | None = None

    def start(self, total: int, description: str) -> None:
        if self._task is None:
            if not self.embedded:
                self.progress.start()
            self._task = self.progress.add_task(description, total=total)
        else:
            self.progress.reset(self._task, total=total, description=description)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self.progress.advance(self._task, n)

    def finish(self) -> None:
        pass

    @property
    def active(self) -> bool:
        return self._task is not None

    def close(self) -> None:
        if self._task is not None:
            if not self.embedded:
                self.progress.stop()
            self.progress.remove_task(self._task)
            self._task = None


@dataclass(frozen=True)
class RunningRun:
    spec: RunSpec
    where: str
    elapsed: float
    left: float | None  # expected seconds to go; None until a comparable run has finished


@dataclass(frozen=True)
class Snapshot:
    queued: int
    running: list[RunningRun]
    done: int
    failed: int
    eta: float | None  # seconds until the last run finishes, at the parallelism seen so far
    elapsed: float = 0.0

    @property
    def workers(self) -> int:
        """Distinct processes (host:pid) running the runs in progress."""
        return len({r.where for r in self.running})


def duration(seconds: float | None, prose: bool = False) -> str:
    """``1m05s`` for the live view; ``prose=True``: ``1 min 05 s`` (and tenths under a minute) for the boards."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    sep, (sec, mins, hours) = (" ", (" s", " min", " h")) if prose else ("", ("s", "m", "h"))
    if seconds < 60:
        return f"{seconds:.1f}{sec}" if prose else f"{s}{sec}"
    if s < 3600:
        return f"{s // 60}{mins}{sep}{s % 60:02d}{sec}"
    return f"{s // 3600}{hours}{sep}{s % 3600 // 60:02d}{mins}"


def _where(attempt: dict[str, Any]) -> str:
    where = f"{attempt.get('host', '?')}:{attempt.get('pid', '?')}"
    gpu = attempt.get("cuda_visible_devices")
    return f"{where} gpu {gpu}" if gpu else where


class SuiteProgress:
    """Live queued/running/done/failed view of one ``ctrbench run``; a context manager.

    ``specs`` are the runs this invocation executes, ``invocation`` the id its runs write into their
    running.json (`Session.invocation`): a marker of another invocation or of a dead worker is not "running".
    A run's expected duration is the mean wall time of the finished runs of the same configuration (other
    seeds), else of all finished runs; the suite ETA divides the remaining work by the number of runs seen
    running at once. Nothing is drawn when the console is not a terminal.
    """

    def __init__(self, console: Console, store: Store, specs: Sequence[RunSpec], invocation: str, *,
                 title: str = "", reporter: RichReporter | None = None, poll_seconds: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.console, self.store, self.invocation = console, store, invocation
        self.specs = {s.run_id: s for s in specs}
        self.title, self.reporter, self.clock = title, reporter, clock
        self.poll_seconds = max(poll_seconds, len(self.specs) / 500)  # a big suite on NFS: fewer reads
        self._lock = threading.Lock()
        self._results: dict[str, RunResult] = {}
        self._started: dict[str, dict[str, Any]] = {}
        self._durations: dict[str, list[float]] = {}
        self._polled = -float("inf")
        self._most_parallel = 1
        self._t0 = clock()
        self._live: Live | None = None

    # -- events ----------------------------------------------------------------------------------------

    def finished(self, spec: RunSpec, result: RunResult) -> None:
        """An executor yielded ``result``: the run is done (or failed) and leaves the running list."""
        seconds = self._wall_seconds(spec)
        with self._lock:
            self.specs.setdefault(spec.run_id, spec)
            self._results[spec.run_id] = result
            started = self._started.pop(spec.run_id, None)
            if seconds is None and started and result.ok:
                seconds = self.clock() - float(started.get("started_at", self.clock()))
            if seconds is not None and result.ok:
                self._durations.setdefault(_kind(spec), []).append(seconds)

    def _wall_seconds(self, spec: RunSpec) -> float | None:
        run = self.store.load(spec.suite, spec.run_id)
        value = run.provenance().get("wall_seconds") if run is not None else None
        return float(value) if isinstance(value, (int, float)) else None

    def poll(self, force: bool = False) -> None:
        """Read the running.json markers of the runs not finished yet (at most every ``poll_seconds``)."""
        now = self.clock()
        if not force and now - self._polled < self.poll_seconds:
            return
        self._polled = now
        with self._lock:
            pending = [s for rid, s in self.specs.items() if rid not in self._results]
        started = {}
        for spec in pending:
            attempt = self.store.attempt(spec)
            if attempt is not None and attempt.get("invocation") == self.invocation:
                started[spec.run_id] = attempt
        with self._lock:
            for rid, attempt in started.items():
                if rid not in self._results:
                    self._started[rid] = attempt
            self._most_parallel = max(self._most_parallel, len(self._started))

    # -- state -----------------------------------------------------------------------------------------

    def _expected(self, spec: RunSpec) -> float | None:
        same = self._durations.get(_kind(spec))
        if same:
            return statistics.fmean(same)
        every = [d for ds in self._durations.values() for d in ds]
        return statistics.fmean(every) if every else None

    def snapshot(self) -> Snapshot:
        self.poll()
        now = self.clock()
        with self._lock:
            running = []
            for rid, attempt in self._started.items():
                spec = self.specs[rid]
                elapsed = max(0.0, now - float(attempt.get("started_at", now)))
                expected = self._expected(spec)
                running.append(RunningRun(spec, _where(attempt), elapsed,
                                          None if expected is None else max(0.0, expected - elapsed)))
            running.sort(key=lambda r: -r.elapsed)
            queued = [s for rid, s in self.specs.items() if rid not in self._results and rid not in self._started]
            failed = sum(1 for r in self._results.values() if not r.ok)
            done = len(self._results) - failed
            eta: float | None = None
            if not queued and not running:
                eta = 0.0
            elif all(r.left is not None for r in running):
                expected_queued = [self._expected(s) for s in queued]
                if all(e is not None for e in expected_queued):
                    work = sum(r.left for r in running if r.left is not None) + sum(e for e in expected_queued if e)
                    eta = max(max((r.left or 0.0 for r in running), default=0.0), work / self._most_parallel)
            return Snapshot(len(queued), running, done, failed, eta, now - self._t0)

    # -- drawing ---------------------------------------------------------------------------------------

    def __rich__(self) -> RenderableType:
        snap = self.snapshot()
        head = Text.assemble(
            (f"{self.title}: " if self.title else "", "bold"),
            f"{snap.queued} queued · ", (f"{len(snap.running)} running", "cyan"),
            f" on {snap.workers} workers · " if snap.workers > 1 else " · ",
            (f"{snap.done} done", "green"), " · ", (f"{snap.failed} failed", "red" if snap.failed else ""),
            f" · elapsed {duration(snap.elapsed)} · ETA {duration(snap.eta)}")
        parts: list[RenderableType] = [head]
        if snap.running:
            table = Table("run", "where", "elapsed", "ETA", box=None, pad_edge=False, show_header=True)
            for r in snap.running[:MAX_ROWS]:
                dataset = r.spec.labels.get("dataset", r.spec.dataset.name)
                label = f"{dataset}  {r.spec.config_label()}  seed {r.spec.seed}"
                table.add_row(label, r.where, duration(r.elapsed), duration(r.left))
            parts.append(table)
            if len(snap.running) > MAX_ROWS:
                parts.append(Text(f"… and {len(snap.running) - MAX_ROWS} more running"))
        if self.reporter is not None and self.reporter.active:
            parts.append(self.reporter.progress)
        return Group(*parts)

    def start(self) -> SuiteProgress:
        if self.reporter is not None:
            self.reporter.embedded = True
        if self.console.is_terminal and self._live is None:
            self._live = Live(self, console=self.console, refresh_per_second=2, transient=True)
            self._live.start()
        return self

    def close(self) -> None:
        if self.reporter is not None:
            self.reporter.close()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> SuiteProgress:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kind(spec: RunSpec) -> str:
    """Runs that should take about as long: the same dataset and configuration, any seed."""
    return f"{spec.labels.get('dataset', spec.dataset.name)}|{spec.config_label()}"
