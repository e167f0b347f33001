"""The per-run numbers behind a board, as CSV next to it (``<suite>.runs.csv``).

A board prints means, tests and marks; a reviewer who does not trust them needs the per-seed values to recompute
them, and the store they came from may be gone (another machine, a wiped disk). So every board ships its runs'
metrics at full precision (``repr`` of the stored float: parsing it gives the stored value back, bit for bit), each
row naming its config and the baseline it is compared with, and whether the board's numbers use it (a seed its
baseline lacks is left out of a paired cell). DeLong's test needs the predictions, which stay in the store; the
paired t-test, Holm, the means and Rel.Impr can all be recomputed from this file alone.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from ctrbench.leaderboard.board import Board, dataset_of, seed_of
from ctrbench.store import StoredRun

METRICS = ("test_auc", "test_logloss", "valid_auc", "valid_logloss")
COLUMNS = ("run_id", "dataset", "config", "baseline", "seed", "status", "used", *METRICS)


def csv_name(suite_name: str) -> str:
    return f"{suite_name}.runs.csv"


def _number(value: Any) -> str:
    """Full precision, round-trip exact; empty for a missing or non-finite value."""
    if value is None:
        return ""
    x = float(value)
    return repr(x) if math.isfinite(x) else ""


def _ordered(board: Board) -> list[StoredRun]:
    """Runs in the board's own order: dataset, then config as the suite lists them, then seed."""
    config_order = {c: i for i, c in enumerate(board.configs)}
    dataset_order = {d: i for i, d in enumerate(board.datasets)}
    return sorted(board.runs, key=lambda r: (dataset_order.get(dataset_of(r.spec), len(dataset_order)),
                                             config_order.get(r.spec.config_key(), len(config_order)),
                                             r.spec.seed, seed_of(r.spec), r.spec.run_id))


def runs_csv(board: Board) -> str:
    """The CSV text: one row per run the board shows (failed ones too), then one ``<bucket> auc`` column per
    long-tail bucket any run reports, then the run's git commit."""
    buckets = sorted({name for r in board.runs for name in r.result.buckets})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*COLUMNS, *(f"{b} auc" for b in buckets), "git_commit", "git_dirty"])
    for run in _ordered(board):
        dataset, key = dataset_of(run.spec), run.spec.config_key()
        base = board.baseline_for(key)
        used = run in board.cell(dataset, key)
        prov = run.provenance()
        writer.writerow([
            run.spec.run_id, dataset, run.spec.config_label(), board.label(base) if base is not None else "",
            seed_of(run.spec), run.result.status, "yes" if used else "no",
            *(_number(run.result.metrics.get(m)) for m in METRICS),
            *(_number(run.result.buckets.get(b, {}).get("auc")) for b in buckets),
            prov.get("git_commit") or "", "yes" if prov.get("git_dirty") else "no",
        ])
    return out.getvalue()
