"""The mechanism line at the top of a board: ClickPrompt's alignment gate, from the runs' stored metrics."""

from __future__ import annotations

from types import SimpleNamespace

from ctrbench.leaderboard.diagnostics import diagnostic_lines


def run(method: str, metrics: dict, pretrain: bool = True):
    spec = SimpleNamespace(method=SimpleNamespace(name=method, config={} if pretrain else {"pretrain": False}))
    return SimpleNamespace(spec=spec, result=SimpleNamespace(ok=True, metrics=metrics))


def board(*runs):
    return SimpleNamespace(runs=list(runs))


def test_no_clickprompt_runs_no_line():
    assert diagnostic_lines(board(run("ctr", {}), run("clickprompt", {}, pretrain=False))) == []


def test_cached_stages_say_not_measured():
    (line, _) = diagnostic_lines(board(run("clickprompt", {"test_auc": 0.7}), run("ctr", {})))
    assert "not measured" in line and "1 ClickPrompt runs" in line


def test_below_the_gate_warns_with_min_and_median():
    lines = diagnostic_lines(board(run("clickprompt", {"pamlm_id_gap": 0.004}),
                                   run("clickprompt", {"pamlm_id_gap": 0.2}),
                                   run("clickprompt", {"pamlm_id_gap": 0.1})))
    assert "below the gate" in lines[0] and "min 0.004, median 0.100 nats over 3 runs" in lines[0]


def test_clearing_the_gate_counts_unmeasured_runs():
    lines = diagnostic_lines(board(run("clickprompt", {"pamlm_id_gap": 0.06}), run("clickprompt", {})))
    assert "clears the gate" in lines[0] and "1 runs' stages were not measured" in lines[0]
