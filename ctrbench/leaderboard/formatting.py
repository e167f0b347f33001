"""How numbers and cells are printed: fixed precision everywhere, so a board is a pure function of its runs and a
diff of ``leaderboards/`` shows exactly what changed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ctrbench.progress import duration

DASH = "—"


def esc(text: str) -> str:
    """Make text safe inside a markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def mark_md(mark: str) -> str:
    return mark.replace("*", "\\*")


def mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def mean_std(values: Sequence[float], digits: int = 4) -> str:
    """``mean ± sample std`` (ddof=1); the ± is left out for one value, where the spread is undefined."""
    if not len(values):
        return DASH
    m = mean(values)
    if math.isnan(m):
        return DASH
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {float(np.std(values, ddof=1)):.{digits}f}"


def num(x: float | None, digits: int = 4) -> str:
    return DASH if x is None or math.isnan(x) else f"{x:.{digits}f}"


def bold(text: str, on: bool) -> str:
    return f"**{text}**" if on and text not in (DASH, "") else text


def best(means: dict[Any, float], higher: bool, digits: int = 4) -> set[Any]:
    """Keys whose mean equals the best one as displayed (ties in the printed digits are all bold)."""
    finite = {k: round(v, digits) for k, v in means.items() if not math.isnan(v)}
    if not finite:
        return set()
    top = max(finite.values()) if higher else min(finite.values())
    return {k for k, v in finite.items() if v == top}


def percent(x: float) -> str:
    """A relative change in percent that never hides its sign: ``-0.00%`` would read as "no change", so changes
    smaller than 0.005% get two significant digits instead (``-0.0031%``); exactly zero is ``0.00%``."""
    if x is None or math.isnan(x):
        return DASH
    pct = 100 * x
    if pct == 0:
        return "0.00%"
    if abs(pct) < 0.005:
        return f"{pct:+.2g}%"
    return f"{pct:+.2f}%"


def params(n: float) -> str:
    if math.isnan(n):
        return DASH
    n = int(round(n))
    if n < 1_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1e3:.1f}K"
    return f"{n / 1e6:.2f}M"


def seconds(x: float) -> str:
    """Training time with a precision that suits its size: 0.04, 3.2, 1234."""
    if math.isnan(x):
        return DASH
    return f"{x:.2f}" if x < 1 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def median(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.median(vals)) if vals else math.nan


def prose_duration(secs: float) -> str:
    return duration(secs, prose=True)


def pval(p: float) -> str:
    return DASH if math.isnan(p) else f"{p:.3g}"


def table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = [":---" if a == "l" else "---:" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |",
            *("| " + " | ".join(row) + " |" for row in rows)]
