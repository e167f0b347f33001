"""The per-run CSV next to every board: exact values, the board's pairing, and enough to recompute its statistics
with nothing but the CSV and scipy."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from test_leaderboard import fill_store, make_suite, row

from ctrbench.leaderboard import compare_to_baseline, render_leaderboard, write_leaderboard
from ctrbench.store import Store
from ctrbench.suite import expand

# AUCs with no short decimal form: a CSV that rounded them could not give them back exactly.
AUC = {"dnn": [0.7 + 1 / 3e3, 0.71 + 1 / 7e3, 0.72 + 1 / 9e3],
       "good": [0.8 + 1 / 3e4, 0.82 + 1 / 7e2, 0.84 - 1 / 11e2],
       "same": [0.7 + 1 / 3e3, 0.71 + 1 / 7e3, 0.72 + 1 / 9e3],
       "meh": [0.705 + 1 / 13e3, 0.716 - 1 / 17e3, 0.722 + 1 / 19e3]}


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def board_dir(tmp_path: Path) -> Path:
    suite = make_suite(significance={"test": "ttest"})
    runs = fill_store(tmp_path / "runs", suite, metrics=AUC)
    write_leaderboard(suite, runs, tmp_path / "boards")
    return tmp_path / "boards"


def test_every_run_is_a_row_with_its_exact_metrics(board_dir: Path) -> None:
    rows = read(board_dir / "toy.runs.csv")
    assert len(rows) == 15  # 5 configs x 3 seeds, the failed ones included
    stored = {r.spec.run_id: r for r in Store(board_dir.parent / "runs").collect(expand(make_suite()))}
    assert {r["run_id"] for r in rows} == set(stored)
    for r in rows:
        run = stored[r["run_id"]]
        assert (r["config"], r["seed"], r["dataset"]) == (run.spec.labels["ctr"], str(run.spec.seed), "toyset")
        if r["config"] == "broken":
            assert (r["status"], r["used"], r["test_auc"], r["test_logloss"]) == ("failed", "no", "", "")
            continue
        assert float(r["test_auc"]) == run.result.metrics["test_auc"]  # bit for bit, not approximately
        assert float(r["test_logloss"]) == run.result.metrics["test_logloss"]
        assert r["status"] == "ok" and r["used"] == "yes"
        assert r["baseline"] == ("" if r["config"] == "dnn" else "dnn")
        assert r["git_commit"] == "0123456789abcdef" and r["git_dirty"] == "no"
        assert float(r["user_tail&item_tail auc"]) == run.result.buckets["user_tail&item_tail"]["auc"]
    # the board's order: configs as the suite lists them, then seeds
    assert [(r["config"], r["seed"]) for r in rows][:4] == [("dnn", "1"), ("dnn", "2"), ("dnn", "3"), ("good", "1")]


def test_the_boards_statistics_recompute_from_the_csv_alone(board_dir: Path, tmp_path: Path) -> None:
    rows = [r for r in read(board_dir / "toy.runs.csv") if r["used"] == "yes"]
    auc: dict[str, dict[str, float]] = {}
    for r in rows:
        auc.setdefault(r["config"], {})[r["seed"]] = float(r["test_auc"])
    suite = make_suite(significance={"test": "ttest"})
    runs = Store(tmp_path / "runs").collect(expand(suite))
    comps = {dict(c.config)["ctr"]: c for c in compare_to_baseline(suite, runs)}
    board = (board_dir / "toy.md").read_text(encoding="utf-8")
    p_values = {}
    for config in ("good", "meh"):
        seeds = sorted(set(auc[config]) & set(auc["dnn"]))
        mine, base = [auc[config][s] for s in seeds], [auc["dnn"][s] for s in seeds]
        p_values[config] = stats.ttest_rel(mine, base).pvalue
        assert comps[config].p_value == pytest.approx(p_values[config], rel=1e-12)
        rel = (np.mean(mine) - np.mean(base)) / np.mean(base)
        assert row(board, config)[3] == f"{100 * rel:+.2f}%"
    # Holm over the tested pairs ("same" has no variance to test), recomputed by hand
    ordered = sorted(p_values.values())
    holm = [min(1.0, max((len(ordered) - j) * ordered[j] for j in range(i + 1))) for i in range(len(ordered))]
    assert sorted(comps[c].p_adjusted for c in p_values) == pytest.approx(holm, rel=1e-12)
    assert "[`toy.runs.csv`](toy.runs.csv)" in board


def test_an_unpaired_seed_is_marked_unused(tmp_path: Path) -> None:
    suite = make_suite(grid={"ctr": ["dnn", "good"]})
    runs = [r for r in fill_store(tmp_path / "runs", suite)
            if not (r.spec.labels["ctr"] == "dnn" and r.spec.seed == 2)]
    write_leaderboard(suite, runs, tmp_path / "boards")
    used = {(r["config"], r["seed"]): r["used"] for r in read(tmp_path / "boards" / "toy.runs.csv")}
    assert used == {("dnn", "1"): "yes", ("dnn", "3"): "yes",
                    ("good", "1"): "yes", ("good", "2"): "no", ("good", "3"): "yes"}
    # and the board's mean for "good" is over the used rows only
    assert row(render_leaderboard(suite, runs), "good")[1].startswith("**0.8200 ± 0.0283**")


def test_the_csv_is_deterministic_and_follows_the_store(tmp_path: Path) -> None:
    suite = make_suite(grid={"ctr": ["dnn", "good"]})
    runs = fill_store(tmp_path / "runs", suite)
    first = (write_leaderboard(suite, runs, tmp_path / "a").parent / "toy.runs.csv").read_bytes()
    again = (write_leaderboard(suite, list(reversed(runs)), tmp_path / "b").parent / "toy.runs.csv").read_bytes()
    assert first == again
    write_leaderboard(suite, [], tmp_path / "a")  # an empty store leaves no stale values behind
    assert not (tmp_path / "a" / "toy.runs.csv").exists()
    assert math.isfinite(float(first.decode().splitlines()[1].split(",")[7]))  # test_auc column
