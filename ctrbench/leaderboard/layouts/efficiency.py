"""``efficiency``: parameters, inference and training time next to AUC (ClickPrompt Table 8, CELA Table 3).

Training time comes in two parts because the methods differ in how many phases they train: the final training
(``train_seconds``) and the cached stages before it (pretraining, alignment, an ID model; the run's
``<stage>_seconds`` metrics, `ctrbench.results.stage_seconds`), with their total; the bold marks the lowest total.
"""

from __future__ import annotations

import math

from ctrbench.leaderboard.board import Board
from ctrbench.leaderboard.cells import auc_cell, best_keys, costs, mean_stage_seconds, row_label
from ctrbench.leaderboard.formatting import DASH, best, bold, esc, num, params, seconds, table
from ctrbench.leaderboard.layouts import Rendered, layout

HEADER = ["Model", "Params", "Infer ms/128", "Train s", "Stages s", "Total s", "AUC"]


@layout("efficiency")
def efficiency(board: Board) -> Rendered:
    lines: list[str] = []
    for d in board.datasets:
        lines += [f"### {esc(d)}", ""]
        configs = [k for k in board.configs if board.cell(d, k) or board.has_failed(d, k)]
        cost = {k: costs(board, d, k) for k in configs if board.cell(d, k)}
        stages = {k: mean_stage_seconds(board, d, k) for k in cost}
        total = {k: cost[k][1] + stages[k] for k in cost}
        best_p = best({k: c[0] for k, c in cost.items()}, False, 0)
        best_i = best({k: c[2] for k, c in cost.items()}, False, 2)
        fastest = seconds(min(total.values(), default=math.nan))
        best_t = {k for k, t in total.items() if seconds(t) == fastest != DASH}
        best_auc = best_keys(board, d, configs, "test_auc", True)
        body = []
        for k in configs:
            if k not in cost:
                body.append([row_label(board, k), *(["failed"] * (len(HEADER) - 1))])
                continue
            p, t, i, _ = cost[k]
            body.append([row_label(board, k), bold(params(p), k in best_p), bold(num(i, 2), k in best_i),
                         seconds(t), seconds(stages[k]) if stages[k] else DASH, bold(seconds(total[k]), k in best_t),
                         auc_cell(board, d, k, k in best_auc)])
        lines += [*table(HEADER, body), ""]
    note = ("Params: the parameter count the run reported (median over seeds); Infer ms/128: milliseconds per "
            "inference batch of 128 rows; Train s: the final training's seconds; Stages s: the seconds of the "
            "cached stages the method trains first (pretraining, alignment, an ID model: each run's "
            "`<stage>_seconds` metrics; a stage reused from the cache counts what it cost the run that computed "
            "it); Total s: their sum; all means over seeds. The lowest cost and the best AUC are in bold.")
    return Rendered(lines, notes=[note])
