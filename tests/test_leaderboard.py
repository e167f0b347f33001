"""Leaderboards built from a tiny fake store: layouts, numbers, significance marks, failures, provenance."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ctrbench.errors import CtrbenchError
from ctrbench.leaderboard import Comparison, compare_to_baseline, render_leaderboard, write_leaderboard
from ctrbench.results import RunResult
from ctrbench.spec import RunSpec
from ctrbench.stats import correct_pvalues, delong_test, paired_ttest
from ctrbench.store import Store, StoredRun
from ctrbench.suite import Suite, _Ctx, expand, parse_suite

N_TEST = 400
SEEDS = [1, 2, 3]
# Known per-seed test metrics (seed order 1, 2, 3); "same" repeats the baseline, "broken" always fails.
AUC = {"dnn": [0.70, 0.71, 0.72], "good": [0.80, 0.82, 0.84], "same": [0.70, 0.71, 0.72],
       "meh": [0.705, 0.716, 0.722]}
LOGLOSS = {"dnn": [0.50, 0.51, 0.52], "good": [0.40, 0.41, 0.45], "same": [0.50, 0.51, 0.52],
           "meh": [0.49, 0.50, 0.51]}
BUCKETS = ("user_tail&item_tail", "user_tail&item_head", "user_head&item_tail", "user_head&item_head",
           "user_tail", "user_head", "item_tail", "item_head", "items_head", "items_tail")


def make_suite(**over: Any) -> Suite:
    raw: dict[str, Any] = {
        "schema_version": 1, "name": "toy", "description": "A toy board.", "analysis": "overall",
        "datasets": ["toyset"], "seeds": SEEDS, "defaults": {"method": "ctr", "ctr": "dnn"},
        "grid": {"ctr": ["dnn", "good", "same", "meh", "broken"]}, "baseline": {"ctr": "dnn"},
    }
    raw.update(over)
    return parse_suite(raw, _Ctx("suite.yaml", {}))


def labels_for(dataset: str) -> np.ndarray:
    """The test clicks of a dataset: the same rows, in the same order, for every config and seed."""
    rng = np.random.default_rng(sum(dataset.encode()) if dataset != "toyset" else 0)
    return (rng.random(N_TEST) < 0.3).astype(np.float32)


def fake_predictions(ctr: str, seed: int, y: np.ndarray) -> np.ndarray:
    """``dnn`` and ``same`` give identical scores; ``good`` is nearly perfect; ``meh`` adds a little signal (its
    largest DeLong p over seeds is about 0.02: significant, but not by much)."""
    rng = np.random.default_rng(seed)
    base = 0.3 + 0.1 * y + 0.25 * rng.random(y.size)
    extra = np.random.default_rng(100 + seed)
    if ctr == "good":
        return np.clip(y * 0.8 + 0.2 * extra.random(y.size), 0, 1)
    if ctr == "meh":
        return base + 0.03 * y + 0.4 * extra.random(y.size)
    return base


def provenance(spec: RunSpec, *, dirty: bool = False) -> dict[str, Any]:
    ds = spec.labels["dataset"]
    return {"ctrbench": "0.1.0", "python": "3.11.9", "torch": "2.3.0", "numpy": "1.26.4",
            "git_commit": "0123456789abcdef", "git_dirty": dirty, "device": "cpu (2 threads)",
            "dataset": {"name": ds, "fingerprint": f"fp-{ds}", "splits": {"train": 8000, "valid": 1000,
                                                                           "test": N_TEST}, "train_used": 4000},
            "plm": spec.plm.name if spec.plm else None,
            "plugins": {"ctr": {"name": spec.ctr.name, "plugin": "builtin-ctr", "distribution": "ctrbench 0.1.0"}},
            "seed": spec.seed, "wall_seconds": 1.5, "started_at": f"2024-05-0{spec.seed}T10:00:00+00:00"}


def bucket_values(ctr: str, seed: int) -> dict[str, dict[str, float]]:
    i = SEEDS.index(seed)
    lift = 0.1 if ctr == "good" else 0.0
    return {name: {"auc": 0.60 + lift + 0.02 * i + 0.001 * j, "logloss": 0.55 - lift + 0.01 * i, "n": 10.0 + j}
            for j, name in enumerate(BUCKETS)}


def fill_store(root: Path, suite: Suite, *, metrics: dict[str, list[float]] | None = None) -> list[StoredRun]:
    """Store every spec of the suite: ``broken`` fails, the others are ok with the known metrics above."""
    store = Store(root)
    for spec in expand(suite):
        ctr = spec.labels.get("ctr", spec.ctr.name)
        store.begin(spec)
        if ctr == "broken":
            result = RunResult(spec.run_id, "failed", error="RuntimeError: loss is NaN\nTraceback (most recent)")
            store.finish(spec, result, provenance(spec))
            continue
        i = SEEDS.index(spec.seed)
        y = labels_for(spec.labels["dataset"])
        p = fake_predictions(ctr, spec.seed, y)
        lift = 0.01 if spec.labels.get("plm") == "tiny" else 0.0  # compat: the PLM helps a little
        aucs = [a + lift for a in (metrics or AUC).get(ctr, AUC["dnn"])]
        result = RunResult(spec.run_id, "ok",
                           metrics={"test_auc": aucs[i], "test_logloss": LOGLOSS.get(ctr, LOGLOSS["dnn"])[i],
                                    "valid_auc": 0.7, "valid_logloss": 0.5},
                           buckets=bucket_values(ctr, spec.seed), n_params=12345 if ctr != "good" else 2_500_000,
                           train_seconds=10.0 + i, infer_seconds=0.1, infer_ms_per_batch=1.25, epochs=2)
        store.finish(spec, result, provenance(spec),
                     predictions={"test_y": y, "test_p": p, "valid_y": y[:50], "valid_p": p[:50]})
    return store.collect(expand(suite))


def row(board: str, label: str) -> list[str]:
    """The cells of the table row whose first cell is ``label``."""
    for line in board.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in:\n{board}")


def header(board: str, first: str) -> list[str]:
    return row(board, first)


@pytest.fixture
def overall(tmp_path: Path) -> tuple[Suite, list[StoredRun]]:
    suite = make_suite()
    return suite, fill_store(tmp_path / "runs", suite)


def test_mean_std_bold_and_rel_impr(overall: tuple[Suite, list[StoredRun]]) -> None:
    suite, runs = overall
    board = render_leaderboard(suite, runs)
    assert board.startswith("# toy\n\nA toy board.\n")
    assert header(board, "Model")[:4] == ["Model", "AUC", "Logloss", "Rel.Impr"]
    good = row(board, "good")
    assert good[1] == "**0.8200 ± 0.0200**\\*\\*"  # best AUC in bold, then the significance mark
    assert good[2] == "**0.4200 ± 0.0265**"  # lowest logloss in bold; sample std of 0.40, 0.41, 0.45
    base_mean, good_mean = np.mean(AUC["dnn"]), np.mean(AUC["good"])
    assert good[3] == f"{100 * (good_mean - base_mean) / base_mean:+.2f}%" == "+15.49%"
    baseline = row(board, "dnn (baseline)")
    assert baseline[1] == "0.7100 ± 0.0100" and baseline[3] == "—"
    assert row(board, "same")[3] == "0.00%"  # exactly zero: no sign to keep
    assert good[4:] == ["2.50M", "11.0", "1.25", "3"]  # Params, Train s, Infer ms/128, Seeds
    assert "Rel.Impr = (AUC − AUC_base) / AUC_base" in board


def test_clearly_better_gets_two_stars_and_equal_gets_none(overall: tuple[Suite, list[StoredRun]]) -> None:
    suite, runs = overall
    comps = {dict(c.config)["ctr"]: c for c in compare_to_baseline(suite, runs)}
    assert set(comps) == {"good", "same", "meh"}  # not the baseline, not the config without ok runs
    assert comps["good"].mark == "**" and comps["good"].p_adjusted < 0.01
    # identical AUCs on every seed: the paired t-test has no variance (untested); DeLong per seed says p = 1
    assert comps["same"].mark == "" and math.isnan(comps["same"].p_value) and comps["same"].delong_p == (1, 1, 1)
    assert all(isinstance(c, Comparison) and c.test == "paired_t" and c.dataset == "toyset" for c in comps.values())
    assert row(render_leaderboard(suite, runs), "same")[1] == "0.7100 ± 0.0100"  # no mark


def test_delong_takes_largest_p_over_seeds_and_holm_over_the_board(tmp_path: Path) -> None:
    suite = make_suite(significance={"test": "delong"})
    runs = fill_store(tmp_path, suite)
    comps = compare_to_baseline(suite, runs)
    y = labels_for("toyset")
    raw = []
    for c in comps:
        ctr = dict(c.config)["ctr"]
        raw.append(max(delong_test(y, fake_predictions(ctr, s, y), fake_predictions("dnn", s, y)).p_value
                       for s in SEEDS))
    assert [c.p_value for c in comps] == pytest.approx(raw, rel=1e-12)
    expected = correct_pvalues(raw, "holm")
    assert [c.p_adjusted for c in comps] == pytest.approx(list(expected), rel=1e-12)
    meh = next(c for c in comps if dict(c.config)["ctr"] == "meh")
    assert 0.01 < meh.p_value < 0.025 < meh.p_adjusted < 0.05  # Holm doubles the second smallest of three
    assert meh.mark == "*"
    board = render_leaderboard(suite, runs)
    assert ("two-sided DeLong test on each seed's test set, the largest p over seeds" in board
            and "Holm correction over 3 comparisons (the family: every config vs its baseline); α = 0.05" in board)


def test_paired_ttest_over_seed_aucs(tmp_path: Path) -> None:
    suite = make_suite(significance={"test": "ttest", "correction": "bh"})
    runs = fill_store(tmp_path, suite)
    comps = {dict(c.config)["ctr"]: c for c in compare_to_baseline(suite, runs)}
    assert comps["good"].p_value == pytest.approx(paired_ttest(AUC["good"], AUC["dnn"]).p_value)
    assert math.isnan(comps["same"].p_value) and comps["same"].mark == ""  # identical AUCs: no test
    raw = [comps[k].p_value for k in ("good", "same", "meh")]
    assert [comps[k].p_adjusted for k in ("good", "same", "meh")] == pytest.approx(
        list(correct_pvalues(raw, "bh")), nan_ok=True)
    assert "paired t-test over seeds on test AUC" in render_leaderboard(suite, runs)


def test_failed_runs_are_listed_with_their_error(overall: tuple[Suite, list[StoredRun]]) -> None:
    suite, runs = overall
    board = render_leaderboard(suite, runs)
    assert row(board, "broken")[1:3] == ["failed", "failed"]
    assert "3 runs failed:" in board
    assert "- broken on toyset seed 2: `RuntimeError: loss is NaN`" in board
    assert "Traceback" not in board


def test_rendering_is_deterministic(overall: tuple[Suite, list[StoredRun]], tmp_path: Path) -> None:
    suite, runs = overall
    first = render_leaderboard(suite, runs, generated_by="ctrbench leaderboard suite.yaml")
    shuffled = list(runs)
    random.Random(7).shuffle(shuffled)
    assert render_leaderboard(suite, shuffled, generated_by="ctrbench leaderboard suite.yaml") == first
    path = write_leaderboard(suite, runs, tmp_path / "boards")
    assert path == tmp_path / "boards" / "toy.md"
    again = Store(tmp_path / "runs").collect(expand(suite))  # re-read from disk
    assert write_leaderboard(suite, again, tmp_path / "boards").read_bytes() == path.read_bytes()
    assert path.read_text(encoding="utf-8") == render_leaderboard(suite, runs)


def test_provenance_footer(overall: tuple[Suite, list[StoredRun]]) -> None:
    suite, runs = overall
    board = render_leaderboard(suite, runs)
    footer = board[board.index("## Provenance"):]
    assert "fingerprint `fp-toyset`" in footer
    assert "train 8,000 · valid 1,000 · test 400 (train subsampled to 4,000 rows)" in footer
    assert "- Devices: cpu (2 threads)" in footer
    assert "ctrbench 0.1.0 · torch 2.3.0 · python 3.11.9" in footer
    assert "- Git commits of the runs: `0123456`" in footer
    assert "- Seeds: 1, 2, 3 (planned: 3)" in footer
    assert "- Runs: 15 (12 ok, 3 failed)" in footer
    assert "- Total wall time: 22.5 s (sum over runs)" in footer
    assert "- Latest run: 2024-05-03" in footer


def test_several_datasets_share_one_table_and_one_correction(tmp_path: Path) -> None:
    suite = make_suite(datasets=["toyset", "other"], grid={"ctr": ["dnn", "good", "same"]})
    runs = fill_store(tmp_path, suite)
    board = render_leaderboard(suite, runs)
    assert header(board, "Model")[:7] == ["Model", "toyset AUC", "toyset Logloss", "toyset Rel.Impr",
                                          "other AUC", "other Logloss", "other Rel.Impr"]
    assert row(board, "good")[-1] == "3 / 3"
    comps = compare_to_baseline(suite, runs)
    assert [(dict(c.config)["ctr"], c.dataset) for c in comps] == [
        ("good", "toyset"), ("same", "toyset"), ("good", "other"), ("same", "other")]
    assert [c.p_adjusted for c in comps] == pytest.approx(list(correct_pvalues([c.p_value for c in comps], "holm")),
                                                          nan_ok=True)
    assert "Holm correction over 2 comparisons" in board  # "same" has no variance to test, on either dataset


def test_compat_layout_is_ctr_by_plm(tmp_path: Path) -> None:
    suite = make_suite(analysis="compat", grid={"ctr": ["dnn", "good"], "plm": [None, "tiny"]},
                       baseline={"plm": None})
    runs = fill_store(tmp_path, suite)
    board = render_leaderboard(suite, runs)
    assert header(board, "ctr") == ["ctr", "backbone alone (baseline)", "tiny"]
    # each backbone + PLM cell carries its Rel.Impr over the same backbone alone
    assert row(board, "dnn") == ["dnn", "0.7100 ± 0.0100", f"0.7200 ± 0.0100 ({100 * 0.01 / 0.71:+.2f}%)"]
    # the best cell of the table is bold, and only it
    assert row(board, "good")[1:] == ["0.8200 ± 0.0200", f"**0.8300 ± 0.0200** ({100 * 0.01 / 0.82:+.2f}%)"]
    assert "**Logloss**" in board
    comps = {dict(c.config)["ctr"]: c for c in compare_to_baseline(suite, runs)}
    assert {k: dict(c.baseline)["ctr"] for k, c in comps.items()} == {"dnn": "dnn", "good": "good"}
    assert comps["good"].delong_p == (1.0, 1.0, 1.0)


def test_longtail_layout_has_the_bucket_columns(tmp_path: Path) -> None:
    suite = make_suite(analysis="longtail", grid={"ctr": ["dnn", "good"]}, buckets={"tail_fraction": 0.1})
    runs = fill_store(tmp_path, suite)
    board = render_leaderboard(suite, runs)
    cols = header(board, "Model")
    assert cols == ["Model", "U tail × I tail AUC", "U tail × I tail Logloss", "U tail × I head AUC",
                    "U tail × I head Logloss", "U head × I tail AUC", "U head × I tail Logloss",
                    "U head × I head AUC", "U head × I head Logloss", "Overall AUC"]
    good = row(board, "good")
    # user_tail&item_tail AUC over seeds: 0.70, 0.72, 0.74; user_head&item_head is bucket 3: +0.003
    # bucket cells: mean ± sample std over seeds (untested, so no mark); the overall column carries the mark
    assert good[1] == f"**{np.mean([0.70, 0.72, 0.74]):.4f} ± {np.std([0.70, 0.72, 0.74], ddof=1):.4f}**"
    assert good[1] == "**0.7200 ± 0.0200**"
    assert good[2] == f"**{np.mean([0.45, 0.46, 0.47]):.4f} ± 0.0100**"
    assert good[7] == "**0.7230 ± 0.0200**"
    assert good[-1] == "**0.8200 ± 0.0200**\\*\\*"
    assert row(board, "dnn (baseline)")[1] == "0.6200 ± 0.0200"
    assert "are **not** tested for significance" in board
    assert "bottom 10% of users (items) by interaction count in the train split" in board
    assert "U tail 14" in board  # bucket sizes


def test_headtail_layout_is_sllm4ctr_table_1(tmp_path: Path) -> None:
    suite = make_suite(analysis="headtail", grid={"ctr": ["dnn", "good"]}, buckets={"head_fraction": 0.2})
    runs = fill_store(tmp_path, suite)
    board = render_leaderboard(suite, runs)
    assert header(board, "Model") == ["Model", "Head items AUC", "Head items Logloss", "Tail items AUC",
                                      "Tail items Logloss", "Overall AUC", "Overall Logloss"]
    good = row(board, "good")
    # items_head is bucket 8 (+0.008), items_tail bucket 9 (+0.009); AUC over seeds 0.70, 0.72, 0.74 + that
    assert good[1] == "**0.7280 ± 0.0200**" and good[3] == "**0.7290 ± 0.0200**"
    assert good[2] == f"**{np.mean([0.45, 0.46, 0.47]):.4f} ± 0.0100**"
    assert row(board, "dnn (baseline)")[1] == "0.6280 ± 0.0200"
    assert "Test rows per group: Head items 18, Tail items 19." in board
    assert "top 20% of items by number of train interactions" in board


def test_efficiency_layout(tmp_path: Path) -> None:
    suite = make_suite(analysis="efficiency", grid={"ctr": ["dnn", "good"]})
    board = render_leaderboard(suite, fill_store(tmp_path, suite))
    assert header(board, "Model") == ["Model", "Params", "Infer ms/128", "Train s", "Stages s", "Total s", "AUC"]
    assert row(board, "dnn (baseline)")[:2] == ["dnn (baseline)", "**12.3K**"]
    assert row(board, "good")[1:] == ["2.50M", "**1.25**", "11.0", "—", "**11.0**", "**0.8200 ± 0.0200**\\*\\*"]


def test_efficiency_layout_counts_a_methods_cached_stages(tmp_path: Path) -> None:
    """A two-stage method (here ``good`` with an alignment and a pretraining stage) is not shown as cheap as its
    backbone: its stages' ``<stage>_seconds`` are summed into Stages s and Total s, and the bold total moves."""
    suite = make_suite(analysis="efficiency", grid={"ctr": ["dnn", "good"]})
    runs = fill_store(tmp_path, suite)
    for r in runs:
        if r.spec.labels["ctr"] == "good":  # seeds 1..3: train 10, 11, 12 s; stages 5 + 100 s each
            r.result.metrics.update(align_seconds=100.0, pretrain_seconds=5.0)
    board = render_leaderboard(suite, runs)
    assert row(board, "good")[3:6] == ["11.0", "105", "116"]
    assert row(board, "dnn (baseline)")[3:6] == ["11.0", "—", "**11.0**"]


def test_different_test_rows_are_an_error(overall: tuple[Suite, list[StoredRun]]) -> None:
    suite, runs = overall
    good = next(r for r in runs if r.spec.labels["ctr"] == "good" and r.spec.seed == 1)
    preds = good.predictions()
    preds["test_y"] = 1 - preds["test_y"]
    np.savez_compressed(good.path / "predictions.npz", **preds)
    with pytest.raises(CtrbenchError, match="different test rows"):
        compare_to_baseline(suite, runs)


def test_missing_runs_and_partial_configs(tmp_path: Path) -> None:
    suite = make_suite()
    runs = [r for r in fill_store(tmp_path, suite) if not (r.spec.labels["ctr"] == "good" and r.spec.seed == 3)]
    board = render_leaderboard(suite, runs)
    assert row(board, "good")[1].startswith("**0.8100 ± 0.0141**")
    assert row(board, "good")[-1] == "2/3"  # fewer seeds than the suite plans, and it says so
    assert "1 of 15 runs of this suite are not in the store yet." in board


def test_without_a_baseline_there_is_no_rel_impr_and_no_test(tmp_path: Path) -> None:
    suite = make_suite(baseline=None, seeds=[1], grid={"ctr": ["dnn", "good"]})
    runs = fill_store(tmp_path, suite)
    board = render_leaderboard(suite, runs)
    assert header(board, "Model") == ["Model", "AUC", "Logloss", "Params", "Train s", "Infer ms/128", "Seeds"]
    assert row(board, "good")[1] == "**0.8000**"  # one seed: no ± and no mark
    assert compare_to_baseline(suite, runs) == []
    assert "No baseline is set in the suite" in board


def test_a_stale_run_with_the_same_labels_is_left_out(tmp_path: Path) -> None:
    old = make_suite(seeds=[1], grid={"ctr": ["dnn", "good"]})
    fill_store(tmp_path, old, metrics={"dnn": [0.5], "good": [0.6]})
    new = make_suite(seeds=[1], grid={"ctr": ["dnn", "good"]},
                     defaults={"method": "ctr", "ctr": "dnn", "train": {"epochs": 3}})
    fill_store(tmp_path, new)
    board = render_leaderboard(new, list(Store(tmp_path).runs("toy")))  # the store holds both versions
    assert row(board, "good")[1] == "**0.8000**\\*\\*"
    assert "2 stored runs with the same labels as a run of the current suite (an older configuration)" in board
