"""Board marks as the papers mean them, checked against an independent recomputation.

The fake store here holds predictions, and every stored metric is computed from them (AUC by counting pairs, not
by ctrbench's code), so the board's numbers, tests and marks can be recomputed from scratch: scipy's paired t-test,
a hand-written Holm step-down, a brute-force DeLong on the stored predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

from ctrbench.errors import SuiteError
from ctrbench.leaderboard import DIRTY_WARNING, compare_to_baseline, render_leaderboard, write_leaderboard
from ctrbench.results import RunResult
from ctrbench.store import StoredRun
from ctrbench.suite import Suite, _Ctx, expand, parse_suite

N = 500
SEEDS = [1, 2, 3, 4, 5]
# Target per-seed test-AUC differences from the baseline (config - baseline); predictions are built to hit them.
DIFFS = {
    "good": [0.050, 0.061, 0.055, 0.068, 0.059],
    "worse": [-0.040, -0.052, -0.047, -0.043, -0.050],
    "flip": [0.060, -0.010, 0.050, 0.055, 0.045],  # mostly better, one seed worse: never marked
    "meh": [0.004, 0.014, 0.008, 0.016, 0.009],
}


def pair_auc(y: np.ndarray, p: np.ndarray) -> float:
    """AUC by counting positive/negative pairs (ties count half): independent of ctrbench.stats."""
    if not np.all(np.isfinite(p)):
        return math.nan
    pos, neg = p[y == 1], p[y == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def labels() -> np.ndarray:
    return (np.random.default_rng(0).random(N) < 0.3).astype(np.float32)


def baseline_scores(seed: int, y: np.ndarray, signal: float = 0.8) -> np.ndarray:
    return signal * y + np.random.default_rng(1000 + seed).normal(size=y.size)


def scores_with_auc(y: np.ndarray, base: np.ndarray, target: float, salt: int) -> np.ndarray:
    """Scores correlated with ``base`` whose pair-counted AUC is ``target`` (to within one pair's weight)."""
    noise = np.random.default_rng(salt).normal(size=y.size) * 0.3
    lo, hi = -3.0, 3.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if pair_auc(y, base + noise + mid * y) < target:
            lo = mid
        else:
            hi = mid
    return base + noise + hi * y


def one_swap_worse(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``p`` with one positive/negative pair that it orders correctly swapped: AUC lower by exactly 1/(P·N)."""
    order = np.argsort(p, kind="stable")
    for a, b in zip(order[:-1], order[1:], strict=True):
        if y[a] == 0 and y[b] == 1 and p[a] < p[b]:
            out = p.copy()
            out[a], out[b] = p[b], p[a]
            return out
    raise AssertionError("no adjacent pair to swap")


def make_suite(**over: Any) -> Suite:
    raw: dict[str, Any] = {
        "schema_version": 1, "name": "sig", "analysis": "overall", "datasets": ["toyset"], "seeds": SEEDS,
        "defaults": {"method": "ctr", "ctr": "dnn"},
        "grid": {"ctr": ["dnn", "good", "worse", "flip", "meh", "same", "tiny"]}, "baseline": {"ctr": "dnn"},
    }
    raw.update(over)
    return parse_suite(raw, _Ctx("suite.yaml", {}))


def build(root: Path, suite: Suite, scores: Any, *, dirty: bool = False, skip: set[tuple[str, int]] = frozenset()
          ) -> list[StoredRun]:
    """Write predictions for every spec and store metrics computed from them. ``scores(labels, seed, y)``."""
    y = labels()
    runs = []
    for spec in expand(suite):
        key = "·".join(v for _, v in spec.config_key())
        if (key, spec.seed) in skip:
            continue
        p = scores(dict(spec.config_key()), spec.seed, y)
        d = root / spec.suite / spec.run_id
        d.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(d / "predictions.npz", test_y=y, test_p=p, valid_y=y[:50], valid_p=p[:50])
        (d / "provenance.json").write_text(json.dumps({
            "git_commit": "0123456789abcdef", "git_dirty": dirty, "device": "cpu (1 threads, x86_64)",
            "dataset": {"name": "toyset", "fingerprint": "fp", "splits": {"train": 1000, "valid": 50, "test": N}},
            "seed": spec.seed, "wall_seconds": 1.0, "started_at": "2026-12-01T10:00:00+00:00"}))
        auc = pair_auc(y, p)
        result = RunResult(spec.run_id, "ok", metrics={"test_auc": auc, "test_logloss": 0.5, "valid_auc": auc,
                                                       "valid_logloss": 0.5},
                           n_params=100, train_seconds=1.0, infer_seconds=0.1, infer_ms_per_batch=1.0, epochs=1)
        runs.append(StoredRun(spec, result, d))
    return runs


def standard_scores(labels_: dict[str, str], seed: int, y: np.ndarray) -> np.ndarray:
    ctr = labels_["ctr"]
    base = baseline_scores(seed, y)
    if ctr in ("dnn", "same"):
        return base
    if ctr == "tiny":
        return one_swap_worse(y, base)
    i = SEEDS.index(seed)
    return scores_with_auc(y, base, pair_auc(y, base) + DIFFS[ctr][i], salt=hash(ctr) % 1000 + 7 * seed)


@pytest.fixture(scope="module")
def board_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Suite, list[StoredRun]]:
    suite = make_suite()
    return suite, build(tmp_path_factory.mktemp("store"), suite, standard_scores)


def holm(p: list[float]) -> list[float]:
    """Holm's step-down, written out: the k-th smallest p times (m - k + 1), running max, capped at 1."""
    idx = [i for i, x in enumerate(p) if not math.isnan(x)]
    order = sorted(idx, key=lambda i: p[i])
    out = [math.nan] * len(p)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, (len(idx) - k) * p[i])
        out[i] = min(1.0, running)
    return out


def brute_delong_p(y: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> float:
    """DeLong's test from its structural components, computed pair by pair."""
    def components(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = p[y == 1], p[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)
    va, wa = components(pa)
    vb, wb = components(pb)
    s10 = np.cov(np.vstack([va, vb]))
    s01 = np.cov(np.vstack([wa, wb]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / va.size + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / wa.size
    z = (va.mean() - vb.mean()) / math.sqrt(var)
    return float(2 * sps.norm.sf(abs(z)))


def aucs(runs: list[StoredRun], ctr: str) -> dict[int, float]:
    return {r.spec.seed: r.result.metrics["test_auc"] for r in runs if r.spec.labels["ctr"] == ctr}


def cell(board: str, label: str, col: int) -> str:
    for line in board.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells[col]
    raise AssertionError(f"no row {label!r}")


def test_stored_metrics_hit_their_targets(board_runs: tuple[Suite, list[StoredRun]]) -> None:
    _, runs = board_runs
    base = aucs(runs, "dnn")
    for ctr, diffs in DIFFS.items():
        got = [aucs(runs, ctr)[s] - base[s] for s in SEEDS]
        assert got == pytest.approx(diffs, abs=2e-4)


def test_paired_t_and_holm_match_an_independent_recomputation(board_runs: tuple[Suite, list[StoredRun]]) -> None:
    suite, runs = board_runs
    comps = compare_to_baseline(suite, runs)
    base = aucs(runs, "dnn")
    raw = []
    for c in comps:
        ctr = dict(c.config)["ctr"]
        a = aucs(runs, ctr)
        if ctr in ("same", "tiny"):
            # a constant difference (0, or exactly one swapped pair on every seed): a t-test has no variance to
            # work with, and scipy's t on the rounding noise of a - b would claim p ~ 1e-47
            raw.append(math.nan)
        else:
            raw.append(float(sps.ttest_rel([a[s] for s in SEEDS], [base[s] for s in SEEDS]).pvalue))
        assert c.test == "paired_t" and c.seeds == tuple(str(s) for s in SEEDS)
    assert [c.p_value for c in comps] == pytest.approx(raw, rel=1e-9, nan_ok=True)
    assert [c.p_adjusted for c in comps] == pytest.approx(holm(raw), rel=1e-9, nan_ok=True)


def test_delong_per_seed_is_in_the_details(board_runs: tuple[Suite, list[StoredRun]]) -> None:
    suite, runs = board_runs
    good = next(c for c in compare_to_baseline(suite, runs) if dict(c.config)["ctr"] == "good")
    by_seed = {r.spec.seed: r for r in runs}
    y = labels()
    expected = []
    for s in SEEDS:
        run = next(r for r in runs if r.spec.labels["ctr"] == "good" and r.spec.seed == s)
        base = next(r for r in runs if r.spec.labels["ctr"] == "dnn" and r.spec.seed == s)
        expected.append(brute_delong_p(y, run.predictions()["test_p"], base.predictions()["test_p"]))
    assert by_seed and list(good.delong_p) == pytest.approx(expected, rel=1e-6)


def test_marks_have_a_direction_and_need_one_sign(board_runs: tuple[Suite, list[StoredRun]]) -> None:
    suite, runs = board_runs
    comps = {dict(c.config)["ctr"]: c for c in compare_to_baseline(suite, runs)}
    assert comps["good"].mark == "**" and comps["worse"].mark == "††"
    # "flip" is better on four seeds and its p is small, but one seed goes the other way: no mark
    assert comps["flip"].p_adjusted < 0.05 and not comps["flip"].same_sign and comps["flip"].mark == ""
    assert comps["same"].mark == "" and comps["tiny"].mark == ""
    board = render_leaderboard(suite, runs)
    assert cell(board, "good", 1).endswith("\\*\\*") and cell(board, "worse", 1).endswith("††")
    assert "two-sided paired t-test over seeds on test AUC" in board
    assert "† / †† significant degradation" in board


def test_raw_and_adjusted_p_in_different_bands(board_runs: tuple[Suite, list[StoredRun]]) -> None:
    """The mark follows the adjusted p: "meh" is below 0.01 raw but not after Holm, so it gets one star."""
    suite, runs = board_runs
    meh = next(c for c in compare_to_baseline(suite, runs) if dict(c.config)["ctr"] == "meh")
    assert meh.p_value < 0.01 <= meh.p_adjusted < 0.05
    assert meh.mark == "*"


def test_tiny_negative_rel_impr_keeps_its_sign(board_runs: tuple[Suite, list[StoredRun]]) -> None:
    suite, runs = board_runs
    board = render_leaderboard(suite, runs)
    base, tiny = aucs(runs, "dnn"), aucs(runs, "tiny")
    rel = (np.mean(list(tiny.values())) - np.mean(list(base.values()))) / np.mean(list(base.values()))
    assert -5e-5 < rel < 0
    assert cell(board, "tiny", 3) == f"{100 * rel:+.2g}%" and cell(board, "tiny", 3).startswith("-0.00")
    assert cell(board, "same", 3) == "0.00%"


def test_partial_seed_overlap_uses_the_paired_seeds(tmp_path: Path) -> None:
    suite = make_suite(grid={"ctr": ["dnn", "good"]})
    runs = build(tmp_path, suite, standard_scores, skip={("good", 5), ("dnn", 1)})
    comp = compare_to_baseline(suite, runs)[0]
    assert comp.seeds == ("2", "3", "4")
    a, b = aucs(runs, "good"), aucs(runs, "dnn")
    assert comp.p_value == pytest.approx(sps.ttest_rel([a[s] for s in (2, 3, 4)], [b[s] for s in (2, 3, 4)]).pvalue)
    board = render_leaderboard(suite, runs)
    mean_good = np.mean([a[s] for s in (2, 3, 4)])
    assert cell(board, "good", 1).startswith(f"**{mean_good:.4f} ± ")  # the paired seeds, not all four
    rel = (mean_good - np.mean([b[s] for s in (2, 3, 4)])) / np.mean([b[s] for s in (2, 3, 4)])
    assert cell(board, "good", 3) == f"{100 * rel:+.2f}%"
    assert cell(board, "good", -1) == "3/5" and cell(board, "dnn (baseline)", -1) == "4/5"


def test_a_nan_seed_is_left_out(tmp_path: Path) -> None:
    suite = make_suite(grid={"ctr": ["dnn", "good"]})

    def scores(labels_: dict[str, str], seed: int, y: np.ndarray) -> np.ndarray:
        p = standard_scores(labels_, seed, y)
        if labels_["ctr"] == "good" and seed == 2:
            p = p.copy()
            p[3] = np.nan
        return p

    runs = build(tmp_path, suite, scores)
    assert math.isnan(aucs(runs, "good")[2])
    comp = compare_to_baseline(suite, runs)[0]
    assert comp.seeds == ("1", "3", "4", "5") and not any(math.isnan(d) for d in comp.diffs)
    board = render_leaderboard(suite, runs)
    assert cell(board, "good", -1) == "4/5"
    assert "1 run finished with a non-finite test AUC" in board


def test_one_or_two_seeds_use_delong_and_say_so(tmp_path: Path) -> None:
    suite = make_suite(grid={"ctr": ["dnn", "good", "worse"]}, seeds=[1, 2])
    runs = build(tmp_path, suite, standard_scores)
    comps = compare_to_baseline(suite, runs)
    assert {c.test for c in comps} == {"delong"}
    assert [c.p_value for c in comps] == pytest.approx([max(c.delong_p) for c in comps])
    board = render_leaderboard(suite, runs)
    assert "these marks reflect test-set noise only" in board


def test_compare_declares_the_family(board_runs: tuple[Suite, list[StoredRun]]) -> None:
    suite, runs = board_runs
    narrowed = make_suite(significance={"compare": [{"ctr": "good"}, {"ctr": "meh"}]})
    comps = compare_to_baseline(narrowed, runs)
    assert [dict(c.config)["ctr"] for c in comps] == ["good", "meh"]
    raw = [c.p_value for c in comps]
    assert [c.p_adjusted for c in comps] == pytest.approx(holm(raw))
    board = render_leaderboard(narrowed, runs)
    assert "Holm correction over 2 comparisons (the family: the suite's `significance.compare`" in board
    assert cell(board, "worse", 1) == "0.6" + cell(board, "worse", 1)[3:] and "††" not in cell(board, "worse", 1)


def test_a_baseline_at_or_below_half_gets_no_rel_impr(tmp_path: Path) -> None:
    suite = make_suite(grid={"ctr": ["coin", "good"]}, baseline={"ctr": "coin"})

    def scores(labels_: dict[str, str], seed: int, y: np.ndarray) -> np.ndarray:
        base = -0.2 * y + np.random.default_rng(seed).normal(size=y.size)  # worse than random
        return base if labels_["ctr"] == "coin" else base + 2.0 * y

    runs = build(tmp_path, suite, scores)
    assert np.mean(list(aucs(runs, "coin").values())) < 0.5
    board = render_leaderboard(suite, runs)
    assert cell(board, "good", 3) == "—‡"
    assert "not printed, because the reference AUC is at or below 0.5" in board


def test_proposed_over_row_is_the_papers_table_2(board_runs: tuple[Suite, list[StoredRun]]) -> None:
    _, runs = board_runs
    suite = make_suite(rel_impr={"mode": "proposed_over_row", "proposed": {"ctr": "good"}})
    board = render_leaderboard(suite, runs)
    good, worse = aucs(runs, "good"), aucs(runs, "worse")
    expected = (np.mean(list(good.values())) - np.mean(list(worse.values()))) / np.mean(list(worse.values()))
    assert cell(board, "worse", 3) == f"{100 * expected:+.2f}%"
    assert cell(board, "good", 3) == "—"
    assert "(AUC_proposed − AUC_row) / AUC_row" in board


def test_ablation_per_row_baselines_pair_each_row_with_its_own(tmp_path: Path) -> None:
    """clickprompt_layerwise's layout: ``baseline: {ctr: dnn}`` over a ctr x epochs grid compares each ``good``
    cell with ``dnn`` at the *same* epochs (Table 4's layer-wise vs w/o-layer-wise at each K), not with one row."""
    suite = make_suite(analysis="ablation", grid={"ctr": ["dnn", "good"], "train.epochs": [1, 2, 4]},
                       baseline={"ctr": "dnn"})
    lift = {"1": 0.05, "2": 0.3, "4": 0.6}  # good's lift over its own row's dnn grows with epochs

    def scores(labels_: dict[str, str], seed: int, y: np.ndarray) -> np.ndarray:
        e = labels_["train.epochs"]
        base = baseline_scores(seed, y) + 0.2 * int(e) * y  # each epochs row has a different baseline
        if labels_["ctr"] == "dnn":
            return base
        return base + lift[e] * y + 0.2 * np.random.default_rng(seed + 10 * int(e)).normal(size=y.size)

    runs = build(tmp_path, suite, scores)

    def by(ctr: str, e: str) -> dict[int, float]:
        return aucs([r for r in runs if r.spec.labels["train.epochs"] == e], ctr)

    comps = compare_to_baseline(suite, runs)
    assert [(dict(c.config)["train.epochs"], dict(c.baseline)["train.epochs"], dict(c.baseline)["ctr"])
            for c in comps] == [("1", "1", "dnn"), ("2", "2", "dnn"), ("4", "4", "dnn")]
    raw = [float(sps.ttest_rel([by("good", e)[s] for s in SEEDS], [by("dnn", e)[s] for s in SEEDS]).pvalue)
           for e in ("1", "2", "4")]
    assert [c.p_value for c in comps] == pytest.approx(raw, rel=1e-9)
    assert [c.p_adjusted for c in comps] == pytest.approx(holm(raw), rel=1e-9)  # Holm over the 3 pairs
    board = render_leaderboard(suite, runs)
    for e in ("1", "2", "4"):
        good, dnn = np.mean(list(by("good", e).values())), np.mean(list(by("dnn", e).values()))
        assert cell(board, f"good · {e}", 3) == f"{100 * (good - dnn) / dnn:+.2f}%"
        assert cell(board, f"dnn · {e} (baseline)", 3) == "—"
    assert "(per row: each config vs the baseline that shares its row)" in board


@pytest.mark.parametrize("baseline", [{"plm": None, "method": "alone"}, {"plm": "None", "method": "alone"},
                                      {"plm": "none", "method": "alone"}, {"method": "alone"}])
def test_compat_per_row_baselines_any_spelling_of_null(tmp_path: Path, baseline: dict[str, Any]) -> None:
    suite = make_suite(analysis="compat", grid={
        "ctr": ["dnn", "good"], "plm": [None, "tiny"],
        "method": [{"name": "ctr", "label": "alone"}, {"name": "ctr", "label": "prompted"}]},
        exclude=[{"plm": None, "method": "prompted"}, {"plm": "tiny", "method": "alone"}], baseline=baseline)

    def scores(labels_: dict[str, str], seed: int, y: np.ndarray) -> np.ndarray:
        lift = {"dnn": 0.0, "good": 0.4}[labels_["ctr"]] + (0.3 if labels_["method"] == "prompted" else 0.0)
        return baseline_scores(seed, y) + lift * y + 0.1 * np.random.default_rng(seed + 50).normal(size=y.size)

    runs = build(tmp_path, suite, scores)
    comps = compare_to_baseline(suite, runs)
    assert [(dict(c.config)["ctr"], dict(c.baseline)["ctr"], dict(c.baseline)["method"]) for c in comps] == [
        ("dnn", "dnn", "alone"), ("good", "good", "alone")]
    board = render_leaderboard(suite, runs)
    assert "| ctr | alone (baseline) | tiny · prompted |" in board
    dnn_prompted = np.mean(list(aucs([r for r in runs if r.spec.labels["method"] == "prompted"], "dnn").values()))
    dnn_alone = np.mean(list(aucs([r for r in runs if r.spec.labels["method"] == "alone"], "dnn").values()))
    assert f"({100 * (dnn_prompted - dnn_alone) / dnn_alone:+.2f}%)" in cell(board, "dnn", 2)
    assert cell(board, "dnn", 2).split(" (")[0].endswith("\\*\\*")


def test_a_baseline_that_matches_nothing_is_an_error() -> None:
    with pytest.raises(SuiteError, match=r"suite\.yaml: key 'baseline': \{ctr: dcn\} matches no config"):
        make_suite(baseline={"ctr": "dcn"})
    with pytest.raises(SuiteError, match=r"key 'significance.compare\[0\]'"):
        make_suite(significance={"compare": [{"ctr": "nope"}]})
    with pytest.raises(SuiteError, match=r"key 'rel_impr.proposed'"):
        make_suite(rel_impr={"mode": "proposed_over_row"})


def test_a_dirty_board_says_so_and_the_footer_names_what_rendered_it(tmp_path: Path) -> None:
    suite = make_suite(grid={"ctr": ["dnn", "good"]})
    clean = render_leaderboard(suite, build(tmp_path / "a", suite, standard_scores))
    dirty = render_leaderboard(suite, build(tmp_path / "b", suite, standard_scores, dirty=True))
    assert DIRTY_WARNING not in clean and DIRTY_WARNING in dirty.split("## Provenance")[0][:400]
    import scipy

    assert f"scipy {scipy.__version__}" in clean and "- Rendered by ctrbench at commit `" in clean
    assert "sha256 `unavailable" in clean  # suite.yaml does not exist here


def test_committed_boards_are_clean() -> None:
    boards = sorted((Path(__file__).resolve().parents[1] / "leaderboards").glob("*.md"))
    assert boards
    for board in boards:
        text = board.read_text(encoding="utf-8")
        assert DIRTY_WARNING not in text, f"{board.name} comes from runs of a modified tree"
        assert "+dirty" not in text, f"{board.name} names a +dirty commit"
        assert "- Rendered by ctrbench at commit" in text, f"{board.name} was not rendered by the current code"


def test_figures_are_written_next_to_the_board(tmp_path: Path) -> None:
    suite = make_suite(analysis="compat", grid={"ctr": ["dnn", "good"], "plm": [None, "tiny"]},
                       baseline={"plm": None})
    runs = build(tmp_path / "s", suite, lambda lab, s, y: baseline_scores(s, y) + (0.3 * y if lab["plm"] == "tiny"
                                                                                   else 0))
    path = write_leaderboard(suite, runs, tmp_path / "boards")
    svg = tmp_path / "boards" / "sig.relimpr.svg"
    assert svg.exists() and "(sig.relimpr.svg)" in path.read_text(encoding="utf-8")
    from ctrbench.figures import read_svg_ids

    ids = read_svg_ids(svg)
    assert {"cell-0-0", "cell-1-0"} <= ids


def test_every_analysis_has_exactly_one_layout() -> None:
    from ctrbench.leaderboard.layouts import layouts
    from ctrbench.suite import ANALYSES

    assert sorted(layouts()) == sorted(ANALYSES)


def test_longtail_and_sweep_figures_hold_their_series(tmp_path: Path) -> None:
    from ctrbench.figures import read_svg_ids

    suite = make_suite(grid={"ctr": ["dnn", "good"], "train.epochs": [1, 2, 4]}, baseline={"ctr": "dnn",
                                                                                           "train.epochs": 2})
    runs = build(tmp_path / "s", suite, lambda lab, s, y: baseline_scores(s, y) + (0.3 * y if lab["ctr"] == "good"
                                                                                   else 0))
    write_leaderboard(suite, runs, tmp_path / "boards")
    ids = read_svg_ids(tmp_path / "boards" / "sig.sweep.svg")
    assert {"line-dnn", "line-good"} <= ids  # one line per backbone over train.epochs


def test_a_suite_narrowed_to_one_config_has_nothing_to_compare(tmp_path: Path) -> None:
    """`--set ctr=good` on a suite with `baseline: {ctr: dnn}` leaves one config: no error, and no tests."""
    from ctrbench.suite import load_suite

    path = tmp_path / "s.yaml"
    path.write_text("schema_version: 1\nname: sig\ndatasets: [toyset]\nseeds: [1, 2, 3, 4, 5]\n"
                    "grid: {ctr: [dnn, good]}\nbaseline: {ctr: dnn}\n")
    suite = load_suite(path, ["ctr=good"])
    assert {s.ctr.name for s in expand(suite)} == {"good"}
    runs = build(tmp_path / "store", suite, lambda lab, seed, y: baseline_scores(seed, y))
    assert compare_to_baseline(suite, runs) == []
    assert "has nothing to be compared with on this board" in render_leaderboard(suite, runs)


def test_a_rewritten_board_does_not_make_the_tree_dirty(tmp_path: Path) -> None:
    """`ctrbench run A` rewrites leaderboards/A.md; the runs of `ctrbench run B` next are still from clean code."""
    import subprocess

    from ctrbench.gitinfo import git_state

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "leaderboards").mkdir()
    (tmp_path / "leaderboards" / "a.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    (tmp_path / "leaderboards" / "a.md").write_text("new board\n")
    commit, dirty = git_state(tmp_path)
    assert len(commit) == 40 and not dirty
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path) == (commit, True)
