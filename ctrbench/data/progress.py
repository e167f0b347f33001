"""Progress of long preparation steps (passes over a multi-gigabyte file), shown only where a caller asks.

Library code never prints: a builder reports through ``step(description, total)``, which does nothing
unless a reporter was installed with ``reporting(reporter)`` (the ``ctrbench data prepare`` command installs
a rich progress bar; any object with the trainer's ``Reporter`` methods ``start``, ``advance``, ``finish``
works). The reporter lives in a context variable, so threads and nested calls see their own.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Protocol


class Reporter(Protocol):
    """The trainer's progress protocol (``ctrbench.trainer.Reporter``), repeated here to keep torch out."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def finish(self) -> None: ...


_reporter: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("ctrbench_data_progress", default=None)


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Send the progress of preparation steps run inside the block to ``reporter``."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


@contextlib.contextmanager
def step(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """``with step("criteo: pass 1/2", size) as advance: ... advance(n)``; a no-op without a reporter."""
    reporter = _reporter.get()
    if reporter is None:
        yield lambda n: None
        return
    reporter.start(int(total), description)
    try:
        yield reporter.advance
    finally:
        reporter.finish()
