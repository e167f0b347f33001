"""``overall`` / ``ablation``: configs × datasets with AUC, Logloss, Rel.Impr, then cost columns (the papers'
Table 2 and ablation tables). A numeric grid axis with ≥ 3 values (e.g. the number of prompts K) is also drawn as
a line plot of AUC over that axis, one line per value of the other labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ctrbench.leaderboard.board import Board
from ctrbench.leaderboard.cells import (
    auc_cell,
    best_keys,
    costs,
    logloss_cell,
    rel_impr_cell,
    row_label,
    values,
)
from ctrbench.leaderboard.formatting import DASH, esc, num, params, seconds, table
from ctrbench.leaderboard.layouts import Figure, Rendered, layout


def _joined(cost: list[tuple[float, float, float, int]], i: int, fmt) -> str:
    """One cost column: the value per dataset, joined by " / " (a dash where the config has no ok run)."""
    return " / ".join(fmt(c[i]) if c[3] else DASH for c in cost)


@layout("overall", "ablation")
def overall(board: Board) -> Rendered:
    row_title = "Variant" if board.suite.analysis == "ablation" else "Model"
    multi = len(board.datasets) > 1
    with_rel = bool(board.suite.baseline)
    header = [row_title]
    for d in board.datasets:
        prefix = f"{esc(d)} " if multi else ""
        header += [f"{prefix}AUC", f"{prefix}Logloss"] + ([f"{prefix}Rel.Impr"] if with_rel else [])
    header += ["Params", "Train s", "Infer ms/128", "Seeds"]
    best_auc = {d: best_keys(board, d, board.configs, "test_auc", True) for d in board.datasets}
    best_ll = {d: best_keys(board, d, board.configs, "test_logloss", False) for d in board.datasets}
    rows = []
    for key in board.configs:
        row = [row_label(board, key)]
        cost = []
        for d in board.datasets:
            row.append(auc_cell(board, d, key, key in best_auc[d]))
            row.append(logloss_cell(board, d, key, key in best_ll[d]))
            if with_rel:
                row.append(rel_impr_cell(board, d, key) if board.cell(d, key) else DASH)
            cost.append(costs(board, d, key))
        row += [_joined(cost, 0, params), _joined(cost, 1, seconds), _joined(cost, 2, lambda x: num(x, 2)),
                " / ".join(board.seeds_text(d, key) for d in board.datasets)]
        rows.append(row)
    lines = [] if multi else [f"Dataset: `{board.datasets[0]}` (test split)." if board.datasets else "", ""]
    lines += table(header, rows)
    if multi:
        lines += ["", "Params, Train s, Infer ms/128 and Seeds are given per dataset, in column order."]
    return Rendered(lines, figures=sweep_figures(board))


def numeric_axis(board: Board) -> str | None:
    """The grid axis to sweep over: numeric values (not booleans), at least three of them."""
    for axis, vals in board.suite.grid.items():
        if len(vals) >= 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            return axis
    return None


def sweep_figures(board: Board) -> list[Figure]:
    axis = numeric_axis(board)
    if axis is None:
        return []
    xs = sorted({float(v) for v in board.suite.grid[axis]})
    figures = []
    for d in board.datasets:
        series: dict[str, list[float]] = {}
        errors: dict[str, list[float]] = {}
        for key in board.configs:
            labels = dict(key)
            if axis not in labels:
                continue
            name = " · ".join(v for k, v in key if k != axis) or "AUC"
            ys = series.setdefault(name, [math.nan] * len(xs))
            es = errors.setdefault(name, [math.nan] * len(xs))
            aucs = values(board, d, key, "test_auc")
            i = xs.index(float(labels[axis]))
            ys[i] = float(np.mean(aucs)) if aucs else math.nan
            es[i] = float(np.std(aucs, ddof=1)) if len(aucs) > 1 else math.nan
        if not any(not math.isnan(y) for ys in series.values() for y in ys):
            continue

        def write(path: Path, d=d, series=series, errors=errors) -> Path:
            from ctrbench.figures import line_plot_svg

            return line_plot_svg(path, title=f"{board.suite.name}: test AUC over {axis} ({d})", x=xs, series=series,
                                 errors=errors, xlabel=axis, ylabel="test AUC (mean over seeds)")

        suffix = "sweep" if len(board.datasets) == 1 else f"sweep-{d}"
        figures.append(Figure(suffix, f"Test AUC over `{axis}` on {d} (mean ± std over seeds)", write))
    return figures
