"""The mechanism line at the top of a board: ClickPrompt's alignment gate, from the runs' stored metrics."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ctrbench.leaderboard.diagnostics import diagnostic_lines
from ctrbench.leaderboard.ties import tie_lines


def run(method: str, metrics: dict, pretrain: bool = True, label: str = "cp", seed: int = 1):
    spec = SimpleNamespace(method=SimpleNamespace(name=method, config={} if pretrain else {"pretrain": False}),
                           config_label=lambda: label, seed=seed)
    return SimpleNamespace(spec=spec, result=SimpleNamespace(ok=True, metrics=metrics))


def board(*runs):
    return SimpleNamespace(runs=list(runs))


def test_no_clickprompt_runs_no_line():
    assert diagnostic_lines(board(run("ctr", {}), run("clickprompt", {}, pretrain=False))) == []


def test_cached_stages_say_not_measured():
    (line, _) = diagnostic_lines(board(run("clickprompt", {"test_auc": 0.7}), run("ctr", {})))
    assert "not measured" in line and "1 ClickPrompt runs" in line


def test_every_run_below_the_gate_warns_with_min_and_median():
    lines = diagnostic_lines(board(run("clickprompt", {"pamlm_id_gap": 0.004}),
                                   run("clickprompt", {"pamlm_id_gap": 0.02}),
                                   run("clickprompt", {"pamlm_id_gap": 0.01})))
    assert "below the gate** (min 0.004, median 0.010 nats over 3 runs)" in lines[0]
    assert "this board cannot speak to ClickPrompt's mechanism" in lines[0]


def test_some_runs_below_the_gate_are_named_and_the_rest_counted():
    lines = diagnostic_lines(board(run("clickprompt", {"pamlm_id_gap": 0.2}, label="dcnv2", seed=1),
                                   run("clickprompt", {"pamlm_id_gap": 0.046, "pamlm_id_gap_se": 0.0221},
                                       label="autoint", seed=4),
                                   run("clickprompt", {"pamlm_id_gap": 0.1}, label="autoint", seed=1),
                                   run("clickprompt", {"pamlm_id_gap": 0.004}, label="dnn", seed=2)))
    assert "below the gate on 2 of 4 runs** (autoint seed 4: 0.046 ± 0.022, dnn seed 2: 0.004); the other 2 " \
           "clear it (median 0.073 nats over all 4)" in lines[0]
    assert "cells holding them cannot speak to ClickPrompt's mechanism on those seeds" in lines[0]
    many = [run("clickprompt", {"pamlm_id_gap": 0.001 * k}, label="dnn", seed=k) for k in range(1, 8)]
    lines = diagnostic_lines(board(*many, run("clickprompt", {"pamlm_id_gap": 0.3}, label="dcnv2")))
    assert "below the gate on 7 of 8 runs** (dnn seed 1: 0.001, " in lines[0]
    assert " and 2 more); the other run clears it" in lines[0]


def test_clearing_the_gate_counts_unmeasured_runs():
    lines = diagnostic_lines(board(run("clickprompt", {"pamlm_id_gap": 0.06}), run("clickprompt", {})))
    assert "clears the gate" in lines[0] and "1 runs' stages were not measured" in lines[0]


def test_per_run_details_list_the_three_losses_of_measured_runs():
    lines = diagnostic_lines(board(run("clickprompt", {"pamlm_true_id": 4.1942, "pamlm_shuffled_id": 4.1949,
                                                       "pamlm_none_id": 4.2626, "pamlm_id_gap": 0.0007},
                                       label="dcnv2 · shipped", seed=3),
                                   run("clickprompt", {}, label="unmeasured")))
    assert "| dcnv2 · shipped | 3 | 4.1942 | 4.1949 | 4.2626 | 0.0007 | — |" in lines  # staged before q was counted
    assert not any("unmeasured" in line for line in lines)
    lines = diagnostic_lines(board(run("clickprompt", {"pamlm_true_id": 4.1, "pamlm_shuffled_id": 4.3,
                                                       "pamlm_none_id": 4.2, "pamlm_id_gap": 0.2,
                                                       "pamlm_q_constant_fraction": 0.5825}, label="dnn", seed=2)))
    assert "| dnn | 2 | 4.1000 | 4.3000 | 4.2000 | 0.2000 | 58% |" in lines
    lines = diagnostic_lines(board(run("clickprompt", {"pamlm_true_id": 4.1, "pamlm_shuffled_id": 4.3,
                                                       "pamlm_none_id": 4.2, "pamlm_id_gap": 0.2,
                                                       "pamlm_id_gap_se": 0.01234}, label="dnn-bn", seed=4)))
    assert "| dnn-bn | 4 | 4.1000 | 4.3000 | 4.2000 | 0.2000 ± 0.0123 | — |" in lines


def test_cela_line_reports_retrieval_before_and_after_against_chance():
    engaged = {"roma1_recall10_before": 0.006, "roma1_recall10_after": 0.05, "roma2_recall10_after": 0.08,
               "roma_chance10": 0.006}
    weak = {**engaged, "roma2_recall10_after": 0.01}
    lines = diagnostic_lines(board(run("cela", engaged, label="CELA", seed=1), run("ctr", {})))
    assert "alignment engaged" in lines[0] and "chance 0.0060" in lines[0]
    assert "median 0.0060, after the last round median 0.0800 (min 0.0800) over 1 runs" in lines[0]
    assert "| CELA | 1 | 2 | 0.0060 | 0.0800 |" in lines
    (line, *_) = diagnostic_lines(board(run("cela", engaged), run("cela", weak, seed=2)))
    assert "not engaged" in line and "min 0.0100" in line


def test_cela_runs_without_roma_print_nothing():
    assert diagnostic_lines(board(run("cela", {"test_auc": 0.7}))) == []


def scored(label: str, seed: int, y: np.ndarray, p: np.ndarray):
    spec = SimpleNamespace(labels={"dataset": "d", "seed": str(seed)}, dataset=SimpleNamespace(name="d"), seed=seed,
                           config_label=lambda: label, run_id=label)
    return SimpleNamespace(spec=spec, predictions=lambda: {"test_y": y, "test_p": p})


def test_tied_scores_are_reported_with_their_auc_bound_and_distinct_scores_are_not():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(np.int64)
    logit = rng.normal(size=2000) + y
    exact = scored("float32", 1, y, 1 / (1 + np.exp(-logit)))
    coarse = scored("coarse", 1, y, 1 / (1 + np.exp(-np.round(logit * 4) / 4)))  # a few distinct values
    assert tie_lines(SimpleNamespace(ok={("d", "a"): [exact]})) == []
    lines = tie_lines(SimpleNamespace(ok={("d", "a"): [exact], ("d", "b"): [coarse]}))
    pos, neg = coarse.predictions()["test_p"][y == 1][:, None], coarse.predictions()["test_p"][y == 0][None, :]
    bound = float((pos == neg).mean()) / 2  # direct pairwise count
    assert lines[0].startswith("**Tied scores:** 1 of 2 runs") and f"±{bound:.4f}" in lines[0]
    distinct = len(np.unique(coarse.predictions()["test_p"]))
    assert f"| coarse | d | 1 | {distinct:,} | 2,000 | {bound:.4f} |" in lines
    assert not any("float32" in line for line in lines[1:])
