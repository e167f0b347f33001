"""Numerical tests for ctrbench.stats: every estimator is checked against an independent, slow reference."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from ctrbench import stats

# ------------------------------------------------------------------------------------------ reference helpers


def brute_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Pairwise definition: P(score_pos > score_neg) + 0.5 P(tie)."""
    pos = p[y == 1][:, None]
    neg = p[y == 0][None, :]
    wins = (pos > neg).sum() + 0.5 * (pos == neg).sum()
    return float(wins / (pos.size * neg.size))


def psi_matrix(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """DeLong's kernel psi(X_i, Y_j) for every positive i (rows) and negative j (columns)."""
    pos = p[y == 1][:, None]
    neg = p[y == 0][None, :]
    return (pos > neg).astype(float) + 0.5 * (pos == neg)


def structural_components(y: np.ndarray, *preds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Direct O(m n) DeLong (1988): V10/V01 placements, AUCs and the S10, S01 covariance matrices."""
    v10 = np.vstack([psi_matrix(y, p).mean(axis=1) for p in preds])  # one row per classifier, one col per positive
    v01 = np.vstack([psi_matrix(y, p).mean(axis=0) for p in preds])  # one col per negative
    aucs = v10.mean(axis=1)
    s10 = np.atleast_2d(np.cov(v10))  # ddof=1 across positives
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10, s01, v10.shape[1], v01.shape[1]


def correlated_data(rng: np.random.Generator, n: int, ties: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.3).astype(int)
    shared = rng.normal(size=n)
    p_a = 1.0 * y + shared + 0.5 * rng.normal(size=n)
    p_b = 0.8 * y + shared + 0.7 * rng.normal(size=n)
    if ties:  # quantise so there are many ties within and across classes
        p_a, p_b = np.round(p_a, 1), np.round(p_b, 1)
    return y, p_a, p_b


# --------------------------------------------------------------------------------------------------------- AUC


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_bruteforce_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=400)
    p = rng.integers(0, 15, size=400) / 15.0 + 0.05 * y  # heavy ties, some signal
    assert stats.auc(y, p) == pytest.approx(brute_auc(y, p), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tied_pair_fraction_is_the_pairwise_count_and_bounds_the_auc(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=300)
    p = rng.integers(0, 12, size=300) / 12.0 + 0.05 * y
    pos, neg = p[y == 1][:, None], p[y == 0][None, :]
    assert stats.tied_pair_fraction(y, p) == pytest.approx(float((pos == neg).mean()), abs=1e-12)
    # breaking every tie for the positives (or against them) moves the AUC by exactly half the fraction
    best = float((pos > neg).mean() + (pos == neg).mean())
    worst = float((pos > neg).mean())
    half = stats.tied_pair_fraction(y, p) / 2
    assert best - stats.auc(y, p) == pytest.approx(half) and stats.auc(y, p) - worst == pytest.approx(half)
    assert stats.tied_pair_fraction(y, rng.random(300)) == 0.0  # continuous scores do not tie
    assert stats.tied_pair_fraction(y, np.full(300, 0.3)) == 1.0  # a constant predictor ties every pair
    assert math.isnan(stats.tied_pair_fraction(np.zeros(5), np.arange(5.0)))


def test_auc_tiny_hand_example() -> None:
    # positives {0.8, 0.4}, negatives {0.3, 0.4, 0.9}
    # pairs: 0.8 beats 0.3, 0.4 -> 2; 0.4 beats 0.3, ties 0.4 -> 1.5; total 3.5 / 6
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.8, 0.4, 0.3, 0.4, 0.9])
    assert stats.auc(y, p) == pytest.approx(3.5 / 6, abs=1e-15)
    assert stats.auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert stats.auc(np.array([0, 0, 1, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5


def test_auc_accepts_bool_and_column_inputs() -> None:
    y = np.array([True, False, True, False])
    p = np.array([[0.9], [0.1], [0.2], [0.3]])
    assert stats.auc(y, p) == pytest.approx(0.75)


def test_auc_single_class_is_nan_and_bad_labels_raise() -> None:
    assert math.isnan(stats.auc(np.ones(5), np.linspace(0, 1, 5)))
    assert math.isnan(stats.auc(np.zeros(5), np.linspace(0, 1, 5)))
    with pytest.raises(ValueError, match="0/1"):
        stats.auc(np.array([-1, 1, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="rows"):
        stats.auc(np.array([0, 1, 1]), np.array([0.1, 0.2]))


# ----------------------------------------------------------------------------------------------------- logloss


def test_logloss_hand_formula() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.5])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.5)) / 4
    assert stats.logloss(y, p) == pytest.approx(expected, rel=1e-12)


def test_logloss_clipping_keeps_it_finite() -> None:
    y = np.array([1, 0, 0, 1])
    p = np.array([0.0, 1.0, 0.0, 1.0])  # two maximally wrong, two perfect
    val = stats.logloss(y, p)
    assert math.isfinite(val)
    eps = 1e-7
    expected = (2 * -math.log(eps) + 2 * -math.log(1 - eps)) / 4
    assert val == pytest.approx(expected, rel=1e-9)
    assert stats.logloss(y, p, eps=1e-3) == pytest.approx((2 * -math.log(1e-3) + 2 * -math.log(1 - 1e-3)) / 4)


# ---------------------------------------------------------------------------------------- relative improvement


def test_rel_impr_and_rela_impr() -> None:
    assert stats.rel_impr(0.82, 0.80) == pytest.approx(0.025)
    assert stats.rel_impr(0.44, 0.45) == pytest.approx(-1 / 45)
    # RelaImpr: (0.81-0.5)/(0.80-0.5) - 1 = 0.31/0.30 - 1
    assert stats.rela_impr(0.81, 0.80) == pytest.approx(1 / 30)
    assert stats.rela_impr(0.80, 0.80) == 0.0
    assert math.isnan(stats.rel_impr(1.0, 0.0))
    assert math.isnan(stats.rela_impr(0.7, 0.5))


# ----------------------------------------------------------------------------------------------------- DeLong


@pytest.mark.parametrize("seed,ties", [(0, True), (1, True), (2, False)])
def test_delong_variance_matches_structural_components(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    y, p_a, p_b = correlated_data(rng, 500, ties=ties)
    aucs, s10, s01, m, n = structural_components(y, p_a, p_b)
    L = np.array([1.0, -1.0])
    var_ref = float(L @ (s10 / m + s01 / n) @ L)
    res = stats.delong_test(y, p_a, p_b)
    assert res.test == "delong"
    assert res.auc_a == pytest.approx(aucs[0], abs=1e-12)
    assert res.auc_b == pytest.approx(aucs[1], abs=1e-12)
    assert res.auc_a == pytest.approx(brute_auc(y, p_a), abs=1e-12)
    assert res.variance == pytest.approx(var_ref, abs=1e-10, rel=1e-9)
    assert res.statistic == pytest.approx((aucs[0] - aucs[1]) / math.sqrt(var_ref), rel=1e-8)
    # the models are correlated, so the paired variance is well below the sum of the single-AUC variances
    assert res.variance < 0.8 * (s10[0, 0] / m + s01[0, 0] / n + s10[1, 1] / m + s01[1, 1] / n)


def test_delong_pvalue_is_two_sided_normal() -> None:
    rng = np.random.default_rng(3)
    y, p_a, p_b = correlated_data(rng, 300)
    res = stats.delong_test(y, p_a, p_b)
    assert 0.0 < res.p_value < 1.0
    assert res.p_value == pytest.approx(2 * sps.norm.sf(abs(res.statistic)), rel=1e-12)


def test_delong_identical_and_rank_equivalent_predictions_give_p_one() -> None:
    rng = np.random.default_rng(4)
    y, p_a, _ = correlated_data(rng, 200)
    for other in (p_a.copy(), 1 / (1 + np.exp(-p_a))):  # same values; monotone transform = same ranking
        res = stats.delong_test(y, p_a, other)
        assert res.statistic == 0.0
        assert res.p_value == 1.0
        assert res.variance == 0.0
        assert res.auc_a == res.auc_b


def test_delong_strongly_better_model_is_significant() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    y = (rng.random(n) < 0.5).astype(int)
    p_good = 1 / (1 + np.exp(-(2.0 * y + 0.5 * rng.normal(size=n))))
    p_weak = 1 / (1 + np.exp(-(0.3 * y + 1.0 * rng.normal(size=n))))
    res = stats.delong_test(y, p_good, p_weak)
    assert res.auc_a > 0.95 and res.auc_b < 0.7
    assert res.statistic > 0
    assert res.p_value < 1e-6


def test_delong_symmetry() -> None:
    rng = np.random.default_rng(6)
    y, p_a, p_b = correlated_data(rng, 400)
    ab = stats.delong_test(y, p_a, p_b)
    ba = stats.delong_test(y, p_b, p_a)
    assert ba.statistic == pytest.approx(-ab.statistic, rel=1e-12)
    assert ba.p_value == pytest.approx(ab.p_value, rel=1e-12)
    assert ba.variance == pytest.approx(ab.variance, rel=1e-12)
    assert (ba.auc_a, ba.auc_b) == (ab.auc_b, ab.auc_a)


def test_single_auc_variance_matches_structural_components() -> None:
    rng = np.random.default_rng(7)
    y, p_a, _ = correlated_data(rng, 600)
    aucs, s10, s01, m, n = structural_components(y, p_a)
    var_ref = float(s10[0, 0] / m + s01[0, 0] / n)
    assert stats.auc_variance(y, p_a) == pytest.approx(var_ref, abs=1e-12, rel=1e-10)
    # a constant scorer has all placements 1/2 (zero variance, zero covariance), so the paired test against it
    # must reduce to the single-AUC variance
    res = stats.delong_test(y, p_a, np.zeros_like(p_a))
    assert res.auc_b == 0.5
    assert res.variance == pytest.approx(var_ref, abs=1e-12, rel=1e-10)


def test_single_auc_variance_hand_example() -> None:
    # positives {0.8, 0.4}, negatives {0.3, 0.6}: V10 = [1, 0.5], V01 = [1, 0.5], AUC = 0.75
    # S10 = S01 = var([1, 0.5], ddof=1) = 0.125; Var = 0.125/2 + 0.125/2 = 0.125
    y = np.array([1, 1, 0, 0])
    p = np.array([0.8, 0.4, 0.3, 0.6])
    assert stats.auc(y, p) == 0.75
    assert stats.auc_variance(y, p) == pytest.approx(0.125, abs=1e-15)


def test_delong_degenerate_inputs() -> None:
    res = stats.delong_test(np.ones(6), np.arange(6.0), np.arange(6.0)[::-1])
    assert math.isnan(res.statistic) and math.isnan(res.p_value) and math.isnan(res.auc_a)
    with pytest.raises(ValueError):
        stats.delong_test(np.array([0, 1, 0, 1]), np.zeros(4), np.zeros(3))


def test_results_are_frozen_dataclasses() -> None:
    res = stats.delong_test(np.array([0, 1, 0, 1, 1, 0]), np.arange(6.0), np.zeros(6))
    assert isinstance(res, stats.TestResult)
    assert {f.name for f in dataclasses.fields(res)} == {"statistic", "p_value", "test", "auc_a", "auc_b", "variance"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.p_value = 0.0  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------- paired t-test


def test_paired_ttest_matches_scipy() -> None:
    a = [0.8012, 0.8030, 0.8021, 0.8040, 0.8009]
    b = [0.8001, 0.8011, 0.8019, 0.8022, 0.8000]
    ref = sps.ttest_rel(a, b)
    res = stats.paired_ttest(a, b)
    assert res.test == "paired_t"
    assert res.statistic == pytest.approx(float(ref.statistic), rel=1e-12)
    assert res.p_value == pytest.approx(float(ref.pvalue), rel=1e-12)
    # hand check of the statistic: mean(d) / (sd(d) / sqrt(n))
    d = np.subtract(a, b)
    assert res.statistic == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(d.size)), rel=1e-12)


def test_paired_ttest_degenerate_cases_are_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for a, b in [([0.8], [0.7]), ([], []), ([0.8, 0.9, 0.7], [0.7, 0.8, 0.6]), ([0.5, 0.6], [0.5, 0.6])]:
            res = stats.paired_ttest(a, b)
            assert math.isnan(res.statistic) and math.isnan(res.p_value)
    with pytest.raises(ValueError):
        stats.paired_ttest([1.0, 2.0], [1.0])


# ------------------------------------------------------------------------------------- multiple comparisons


def test_holm_and_bh_hand_examples() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04
    # Holm: 4*0.005=0.02, 3*0.01=0.03, 2*0.03=0.06, 1*0.04=0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(stats.correct_pvalues(p, "holm"), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    # BH: 0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04 -> running min from the top: unchanged
    np.testing.assert_allclose(stats.correct_pvalues(p, "bh"), [0.02, 0.04, 0.04, 0.02], rtol=1e-12)
    np.testing.assert_allclose(stats.correct_pvalues(p, "none"), p)


def test_bh_step_up_and_caps() -> None:
    # sorted 0.01, 0.02, 0.03, 0.5 (m=4): raw BH 0.04, 0.04, 0.04, 0.5 -> monotone already
    np.testing.assert_allclose(stats.correct_pvalues([0.5, 0.03, 0.02, 0.01], "bh"), [0.5, 0.04, 0.04, 0.04])
    # step-up pulls an earlier value down: 0.02*3/1=0.06, 0.025*3/2=0.0375, 0.03*3/3=0.03 -> all 0.03
    np.testing.assert_allclose(stats.correct_pvalues([0.02, 0.025, 0.03], "bh"), [0.03, 0.03, 0.03])
    # capping at 1: Holm 0.4*3 = 1.2 -> 1
    np.testing.assert_allclose(stats.correct_pvalues([0.4, 0.6, 0.9], "holm"), [1.0, 1.0, 1.0])


def test_nan_passthrough_excluded_from_m() -> None:
    p = [0.01, float("nan"), 0.04, 0.03, float("nan"), 0.005]
    holm = stats.correct_pvalues(p, "holm")
    bh = stats.correct_pvalues(p, "bh")
    assert np.isnan(holm[[1, 4]]).all() and np.isnan(bh[[1, 4]]).all()
    # m = 4, so the non-nan entries equal the hand example above
    np.testing.assert_allclose(holm[[0, 2, 3, 5]], [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    np.testing.assert_allclose(bh[[0, 2, 3, 5]], [0.02, 0.04, 0.04, 0.02], rtol=1e-12)
    assert np.isnan(stats.correct_pvalues([float("nan")], "holm")).all()
    assert stats.correct_pvalues([], "bh").shape == (0,)


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_corrections_monotone_and_bounded(method: str) -> None:
    rng = np.random.default_rng(8)
    p = np.concatenate([rng.random(30) ** 3, [0.2, 0.2]])  # include a tie
    adj = stats.correct_pvalues(p, method)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adj[order]) >= 0)
    assert np.all(adj >= p) and np.all(adj <= 1.0)


def test_unknown_method_raises_with_names() -> None:
    with pytest.raises(ValueError, match=r"'bonferroni'.*holm.*bh.*none"):
        stats.correct_pvalues([0.1], "bonferroni")


# --------------------------------------------------------------------------------------------------- marks


@pytest.mark.parametrize(
    "p,alpha,mark",
    [
        (0.0099, 0.05, "**"),
        (0.01, 0.05, "*"),
        (0.0499, 0.05, "*"),
        (0.05, 0.05, ""),
        (0.3, 0.05, ""),
        (float("nan"), 0.05, ""),
        (0.019, 0.1, "**"),
        (0.05, 0.1, "*"),
        (0.001, 0.001, ""),
    ],
)
def test_significance_mark(p: float, alpha: float, mark: str) -> None:
    assert stats.significance_mark(p, alpha) == mark


# ------------------------------------------------------------------------------------------------- buckets


def test_bucket_metrics() -> None:
    y = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    p = np.array([0.9, 0.1, 0.4, 0.6, 0.7, 0.8, 0.2, 0.3])
    masks = {
        "head": np.array([True, True, True, True, False, False, False, False]),
        "tail": np.array([False, False, False, False, True, True, True, True]),
        "clicks_only": y == 1,
        "empty": np.zeros(8, dtype=bool),
    }
    out = stats.bucket_metrics(y, p, masks)
    assert set(out) == set(masks)
    # head: positives {0.9, 0.4}, negatives {0.1, 0.6} -> 3 of 4 pairs
    assert out["head"]["auc"] == pytest.approx(0.75)
    assert out["head"]["logloss"] == pytest.approx(-(math.log(0.9) + math.log(0.9) + math.log(0.4) + math.log(0.4)) / 4)
    assert out["head"]["n"] == 4.0 and isinstance(out["head"]["n"], float)
    assert out["tail"]["auc"] == 1.0
    assert math.isnan(out["clicks_only"]["auc"])
    assert out["clicks_only"]["n"] == 4.0
    assert out["clicks_only"]["logloss"] == pytest.approx(-np.log([0.9, 0.4, 0.7, 0.8]).mean())
    assert math.isnan(out["empty"]["auc"]) and math.isnan(out["empty"]["logloss"]) and out["empty"]["n"] == 0.0
    with pytest.raises(ValueError, match="boolean"):
        stats.bucket_metrics(y, p, {"idx": np.array([0, 1, 2])})
