"""A rich progress bar behind the trainer's `Reporter` protocol (the library itself never prints)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RichReporter:
    """One transient bar per epoch; silent when stderr is not a terminal (CI logs stay readable)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True,
                                 disable=not console.is_terminal)
        self._task: int | None = None

    def start(self, total: int, description: str) -> None:
        if self._task is None:
            self.progress.start()
            self._task = self.progress.add_task(description, total=total)
        else:
            self.progress.reset(self._task, total=total, description=description)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self.progress.advance(self._task, n)

    def finish(self) -> None:
        pass

    def close(self) -> None:
        if self._task is not None:
            self.progress.stop()
            self._task = None
