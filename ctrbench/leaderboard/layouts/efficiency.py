"""``efficiency``: parameters, inference and training time next to AUC (ClickPrompt Table 8, CELA Table 3)."""

from __future__ import annotations

import math

from ctrbench.leaderboard.board import Board
from ctrbench.leaderboard.cells import auc_cell, best_keys, costs, row_label
from ctrbench.leaderboard.formatting import DASH, best, bold, esc, num, params, seconds, table
from ctrbench.leaderboard.layouts import Rendered, layout


@layout("efficiency")
def efficiency(board: Board) -> Rendered:
    lines: list[str] = []
    for d in board.datasets:
        lines += [f"### {esc(d)}", ""]
        configs = [k for k in board.configs if board.cell(d, k) or board.has_failed(d, k)]
        cost = {k: costs(board, d, k) for k in configs if board.cell(d, k)}
        best_p = best({k: c[0] for k, c in cost.items()}, False, 0)
        best_i = best({k: c[2] for k, c in cost.items()}, False, 2)
        fastest = seconds(min((c[1] for c in cost.values()), default=math.nan))
        best_t = {k for k, c in cost.items() if seconds(c[1]) == fastest != DASH}
        best_auc = best_keys(board, d, configs, "test_auc", True)
        body = []
        for k in configs:
            if k not in cost:
                body.append([row_label(board, k), *(["failed"] * 4)])
                continue
            p, t, i, _ = cost[k]
            body.append([row_label(board, k), bold(params(p), k in best_p), bold(num(i, 2), k in best_i),
                         bold(seconds(t), k in best_t), auc_cell(board, d, k, k in best_auc)])
        lines += [*table(["Model", "Params", "Infer ms/128", "Train s", "AUC"], body), ""]
    note = ("Params: the parameter count the run reported (median over seeds); Infer ms/128: milliseconds per "
            "inference batch of 128 rows; Train s: training time in seconds; both means over seeds. The lowest cost "
            "and the best AUC are in bold.")
    return Rendered(lines, notes=[note])
