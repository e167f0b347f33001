"""Tied scores: how much of each run's AUC is a coin toss.

AUC counts a tied (positive, negative) pair as half a win, so a run whose scores take few distinct values has an
AUC that breaking the ties could move by up to half its share of tied pairs (`ctrbench.stats.tied_pair_fraction`).
Float32 scores of a trained model almost never tie; bf16 logits (8 significant bits), a quantised model or a
collapsed one do. The board measures this on every run it shows and says so when it is not negligible, so a
reader does not have to trust that the scoring path kept its precision.
"""

from __future__ import annotations

import math
from statistics import median

import numpy as np

from ctrbench.leaderboard.board import Board, dataset_of, seed_of
from ctrbench.leaderboard.formatting import esc
from ctrbench.leaderboard.significance import load_test_predictions
from ctrbench.stats import tied_pair_fraction

# A bound below this is invisible at the four decimals a board prints AUC with.
TIE_NOTE_THRESHOLD = 0.0005


def tie_bounds(board: Board) -> list[tuple[object, int, int, float]]:
    """(run, distinct test scores, test rows, AUC bound) for every run shown whose ties could move its AUC by
    at least `TIE_NOTE_THRESHOLD`, worst first."""
    found = []
    for runs in board.ok.values():
        for run in runs:
            preds = load_test_predictions(run)
            if preds is None:
                continue
            y, p = preds
            bound = tied_pair_fraction(y, p) / 2
            if not math.isnan(bound) and bound >= TIE_NOTE_THRESHOLD:
                found.append((run, len(np.unique(p)), len(p), bound))
    return sorted(found, key=lambda x: (-x[3], x[0].spec.run_id))  # type: ignore[attr-defined]


def tie_lines(board: Board) -> list[str]:
    found = tie_bounds(board)
    if not found:
        return []
    shown = sum(len(runs) for runs in board.ok.values())
    bounds = [b for *_, b in found]
    lines = [f"**Tied scores:** {len(found)} of {shown} runs score their test rows with tied values, so breaking the "
             f"ties could move their test AUC by up to ±{max(bounds):.4f} (median ±{median(bounds):.4f}); AUC and "
             "the tests above count a tied pair as half a win. Float32 scores of a trained model almost never tie: "
             "bf16 logits (8 significant bits), a quantised model or a collapsed one do.", "",
             "<details><summary>runs with tied test scores</summary>", "",
             "| Run | Dataset | Seed | distinct scores | test rows | AUC ± |",
             "| :--- | :--- | ---: | ---: | ---: | ---: |"]
    for run, distinct, rows, bound in found:
        spec = run.spec  # type: ignore[attr-defined]
        lines.append(f"| {esc(spec.config_label())} | {esc(dataset_of(spec))} | {seed_of(spec)} | {distinct:,} | "
                     f"{rows:,} | {bound:.4f} |")
    return [*lines, "", "</details>", ""]
