"""Board layouts, one module each, registered by the ``analysis`` names they render.

A new layout is a new file here with a function decorated ``@layout("name")`` that takes a `Board` and returns a
`Rendered` (markdown lines plus the figures the layout draws); every module of this package is imported on first
use; add the name to ``ctrbench.suite.ANALYSES`` so suites may ask for it (a test keeps the two in step)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ctrbench.leaderboard.board import Board


@dataclass(frozen=True)
class Figure:
    """A figure drawn next to the board: ``<suite>.<name>.svg``, linked from the board with ``caption``."""

    name: str
    caption: str
    write: Callable[[Path], Path]


@dataclass
class Rendered:
    lines: list[str]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # layout-specific footnotes, printed after the common ones


Layout = Callable[[Board], Rendered]
_LAYOUTS: dict[str, Layout] = {}


def layout(*names: str) -> Callable[[Layout], Layout]:
    def register(fn: Layout) -> Layout:
        for name in names:
            if name in _LAYOUTS:
                raise RuntimeError(f"board layout '{name}' is registered twice")
            _LAYOUTS[name] = fn
        return fn
    return register


def layouts() -> dict[str, Layout]:
    if not _LAYOUTS:
        for mod in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{mod.name}")
    return dict(_LAYOUTS)
