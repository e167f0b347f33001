"""``longtail`` (ClickPrompt Table 6: user × item head/tail buckets) and ``headtail`` (SLLM4CTR Table 1: head vs
tail items): AUC and Logloss per bucket, mean ± std over seeds, plus a grouped bar chart of bucket AUCs.

Bucket cells are *not* tested: the stored predictions hold no bucket masks, and testing every bucket would
multiply the family. The footnote says so; bold marks the best mean of a column and nothing more. The overall
AUC column carries the board's tested marks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ctrbench.leaderboard.board import Board
from ctrbench.leaderboard.cells import auc_cell, best_keys, logloss_cell, row_label
from ctrbench.leaderboard.formatting import best, bold, esc, mean_std, table
from ctrbench.leaderboard.layouts import Figure, Rendered, layout
from ctrbench.store import StoredRun
from ctrbench.suite import ConfigKey

# The four user × item crossings of ClickPrompt's Table 6, with their column titles.
CROSS_BUCKETS = (
    ("user_tail&item_tail", "U tail × I tail"),
    ("user_tail&item_head", "U tail × I head"),
    ("user_head&item_tail", "U head × I tail"),
    ("user_head&item_head", "U head × I head"),
)
# Marginal buckets, shown in a second table when the runs have them (SLLM4CTR's head/tail items included).
MARGINAL_BUCKETS = (
    ("user_tail", "U tail"), ("user_head", "U head"), ("item_tail", "I tail"), ("item_head", "I head"),
    ("items_tail", "Items tail"), ("items_head", "Items head"), ("tail", "Tail"), ("head", "Head"),
)
HEADTAIL_BUCKETS = (("items_head", "Head items"), ("items_tail", "Tail items"))
UNTESTED = ("Bucket cells are mean ± sample std over seeds and are **not** tested for significance (only the "
            "overall AUC column is); a bold bucket cell is the best mean of its column, not a significant one.")


def bucket_names(board: Board, dataset: str, known: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    present = {name for k in board.configs for r in board.cell(dataset, k) for name in r.result.buckets}
    return [(n, t) for n, t in known if n in present]


def bucket_values(runs: list[StoredRun], bucket: str, metric: str) -> list[float]:
    return [float(r.result.buckets[bucket].get(metric, math.nan)) for r in runs if bucket in r.result.buckets]


def _bucket_mean(runs: list[StoredRun], bucket: str, metric: str) -> float:
    vals = bucket_values(runs, bucket, metric)
    return float(np.mean(vals)) if vals else math.nan


def bucket_table(board: Board, d: str, buckets: list[tuple[str, str]], configs: list[ConfigKey],
                 overall_logloss: bool = False) -> list[str]:
    """One row per config: AUC and Logloss on each bucket, then the overall test metrics."""
    header = ["Model"]
    columns: list[tuple[str, str, bool]] = []  # (bucket, metric, higher is better)
    for name, title in buckets:
        header += [f"{title} AUC", f"{title} Logloss"]
        columns += [(name, "auc", True), (name, "logloss", False)]
    header += ["Overall AUC", *(["Overall Logloss"] if overall_logloss else [])]
    means = {(k, c): _bucket_mean(board.cell(d, k), c[0], c[1]) for k in configs for c in columns}
    best_cols = {c: best({k: means[(k, c)] for k in configs}, c[2]) for c in columns}
    best_overall = best_keys(board, d, configs, "test_auc", True)
    best_ll = best_keys(board, d, configs, "test_logloss", False)
    body = []
    for k in configs:
        if not board.cell(d, k):
            body.append([row_label(board, k), *(["failed"] * (len(header) - 1))])
            continue
        row = [row_label(board, k),
               *(bold(mean_std(bucket_values(board.cell(d, k), c[0], c[1])), k in best_cols[c]) for c in columns),
               auc_cell(board, d, k, k in best_overall)]
        if overall_logloss:
            row.append(logloss_cell(board, d, k, k in best_ll))
        body.append(row)
    return table(header, body)


def bucket_sizes(board: Board, dataset: str, buckets: list[tuple[str, str]]) -> str:
    for k in board.configs:
        for r in board.cell(dataset, k):
            parts = [f"{title} {int(r.result.buckets[n].get('n', 0)):,}" for n, title in buckets
                     if n in r.result.buckets and not math.isnan(r.result.buckets[n].get("n", math.nan))]
            if parts:
                return ", ".join(parts)
    return ""


def _configs(board: Board, d: str) -> list[ConfigKey]:
    return [k for k in board.configs if board.cell(d, k) or board.has_failed(d, k)]


def bars(board: Board, d: str, buckets: list[tuple[str, str]], configs: list[ConfigKey]) -> Figure:
    series = {board.label(k): [_bucket_mean(board.cell(d, k), n, "auc") for n, _ in buckets]
              for k in configs if board.cell(d, k)}
    errors = {board.label(k): [float(np.std(v, ddof=1)) if len(v := bucket_values(board.cell(d, k), n, "auc")) > 1
                               else math.nan for n, _ in buckets]
              for k in configs if board.cell(d, k)}
    groups = [t for _, t in buckets]
    finite = [v for vals in series.values() for v in vals if not math.isnan(v)]
    # bars of AUCs between 0.6 and 0.8 drawn from 0 all look alike: start the axis just below the lowest bar
    low = max(0.0, math.floor((min(finite, default=0.5) - 0.05) * 20) / 20)

    def write(path: Path) -> Path:
        from ctrbench.figures import grouped_bars_svg

        return grouped_bars_svg(path, title=f"{board.suite.name}: test AUC per bucket ({d})", groups=groups,
                                series=series, errors=errors, ylabel="test AUC (mean ± std over seeds)",
                                ylim=(low, 1.0))

    suffix = "buckets" if len(board.datasets) == 1 else f"buckets-{d}"
    return Figure(suffix, f"Test AUC per bucket on {d} (mean ± std over seeds)", write)


@layout("headtail")
def headtail(board: Board) -> Rendered:
    lines: list[str] = []
    figures: list[Figure] = []
    for d in board.datasets:
        configs = _configs(board, d)
        buckets = bucket_names(board, d, HEADTAIL_BUCKETS)
        lines += [f"### {esc(d)}", "", *bucket_table(board, d, buckets, configs, overall_logloss=True)]
        sizes = bucket_sizes(board, d, buckets)
        lines += ["", f"Test rows per group: {sizes}.", ""] if sizes else [""]
        if buckets:
            figures.append(bars(board, d, buckets, configs))
    b = board.suite.buckets
    note = (f"Head items: the top {b.head_fraction:.0%} of items by number of train interactions "
            f"(`buckets.head_fraction: {b.head_fraction:g}`); tail items: all others, including items unseen in "
            f"train. {UNTESTED}")
    return Rendered(lines, figures=figures, notes=[note])


@layout("longtail")
def longtail(board: Board) -> Rendered:
    lines: list[str] = []
    figures: list[Figure] = []
    for d in board.datasets:
        lines += [f"### {esc(d)}", ""]
        configs = _configs(board, d)
        cross = bucket_names(board, d, CROSS_BUCKETS)
        lines += bucket_table(board, d, cross, configs)
        marginal = bucket_names(board, d, MARGINAL_BUCKETS)
        if marginal:
            mbest = {n: best({k: _bucket_mean(board.cell(d, k), n, "auc") for k in configs}, True)
                     for n, _ in marginal}
            mbody = [[row_label(board, k), *(bold(mean_std(bucket_values(board.cell(d, k), n, "auc")), k in mbest[n])
                                             for n, _ in marginal)]
                     for k in configs if board.cell(d, k)]
            lines += ["", "AUC on the marginal buckets:", "", *table(["Model", *(t for _, t in marginal)], mbody)]
        sizes = bucket_sizes(board, d, cross + marginal)
        if sizes:
            lines += ["", f"Test rows per bucket: {sizes}."]
        lines.append("")
        if cross or marginal:
            figures.append(bars(board, d, cross or marginal, configs))
    b = board.suite.buckets
    notes = [f"Tail users (items) are the bottom {b.tail_fraction:.0%} of users (items) by interaction count in "
             f"the train split (`buckets.tail_fraction: {b.tail_fraction:g}`); head = the others. {UNTESTED}"]
    if any(n in ("items_head", "items_tail", "head", "tail") for d in board.datasets
           for n, _ in bucket_names(board, d, MARGINAL_BUCKETS)):
        notes.append(f"Items head/tail (SLLM4CTR): the top {b.head_fraction:.0%} of items by train frequency "
                     f"(`buckets.head_fraction: {b.head_fraction:g}`) vs the rest.")
    return Rendered(lines, figures=figures, notes=notes)
