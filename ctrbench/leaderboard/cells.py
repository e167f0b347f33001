"""Cells every layout shares: a row's label, an AUC cell with its mark, a Logloss cell, a Rel.Impr cell, costs."""

from __future__ import annotations

import math

from ctrbench.leaderboard.board import Board, test_auc
from ctrbench.leaderboard.formatting import DASH, best, bold, esc, mark_md, mean, mean_std, median, percent
from ctrbench.results import stage_seconds
from ctrbench.suite import ConfigKey

# Shown instead of a Rel.Impr whose reference AUC is at or below 0.5 (no better than random).
NO_REL_IMPR = "—‡"


def row_label(board: Board, key: ConfigKey) -> str:
    label = esc(board.label(key))
    return f"{label} (baseline)" if board.is_baseline(key) else label


def values(board: Board, dataset: str, key: ConfigKey, metric: str) -> list[float]:
    return [test_auc(r) if metric == "test_auc" else float(r.result.metrics.get(metric, math.nan))
            for r in board.cell(dataset, key)]


def auc_cell(board: Board, dataset: str, key: ConfigKey, is_best: bool) -> str:
    if not board.cell(dataset, key):
        return "failed" if board.has_failed(dataset, key) else DASH
    comp = board.comparison(dataset, key)
    return bold(mean_std(values(board, dataset, key, "test_auc")), is_best) + (mark_md(comp.mark) if comp else "")


def logloss_cell(board: Board, dataset: str, key: ConfigKey, is_best: bool) -> str:
    if not board.cell(dataset, key):
        return "failed" if board.has_failed(dataset, key) else DASH
    return bold(mean_std(values(board, dataset, key, "test_logloss")), is_best)


def rel_impr_cell(board: Board, dataset: str, key: ConfigKey) -> str:
    value, ref = board.rel_impr(dataset, key)
    if math.isnan(ref):
        return DASH
    return NO_REL_IMPR if ref <= 0.5 else percent(value)


def has_hidden_rel_impr(board: Board) -> bool:
    return any(rel_impr_cell(board, d, k) == NO_REL_IMPR for d in board.datasets for k in board.configs)


def best_keys(board: Board, dataset: str, configs: list[ConfigKey], metric: str, higher: bool) -> set[ConfigKey]:
    means = {k: mean(values(board, dataset, k, metric)) for k in configs if board.cell(dataset, k)}
    return best(means, higher)


def costs(board: Board, dataset: str, key: ConfigKey) -> tuple[float, float, float, int]:
    """(median params, mean train seconds, mean inference ms per 128 rows, number of runs) of a cell."""
    runs = board.cell(dataset, key)
    n_params = median([float(r.result.n_params) for r in runs])
    train = mean([float(r.result.train_seconds) for r in runs]) if runs else math.nan
    infer = [float(r.result.infer_ms_per_batch) for r in runs if not math.isnan(r.result.infer_ms_per_batch)]
    return n_params, train, mean(infer), len(runs)


def mean_stage_seconds(board: Board, dataset: str, key: ConfigKey) -> float:
    """Mean over a cell's runs of their cached stages' seconds (`ctrbench.results.stage_seconds`)."""
    runs = board.cell(dataset, key)
    return mean([stage_seconds(r.result.metrics) for r in runs]) if runs else math.nan
