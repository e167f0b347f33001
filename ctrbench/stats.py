"""Statistics behind the CTR leaderboards: metrics, relative improvements and significance tests.

CTR papers routinely claim wins of 0.1-0.3% AUC, which is the same order as seed noise, so a leaderboard that
only prints means invites over-reading. This module supplies the pieces needed to say *whether* a gap is real:
DeLong's test for two AUCs measured on the same test rows, a paired t-test across seeds, and multiple-comparison
corrections because a leaderboard compares many models against one baseline at once.

Everything here is pure numpy/scipy and deterministic, so leaderboard numbers are reproducible bit for bit and the
module can be imported without torch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

__all__ = [
    "DeLongResult",
    "TestResult",
    "auc",
    "auc_variance",
    "bucket_metrics",
    "correct_pvalues",
    "delong_test",
    "logloss",
    "paired_ttest",
    "rel_impr",
    "rela_impr",
    "significance_mark",
    "tied_pair_fraction",
]

_METHODS = ("holm", "bh", "none")


@dataclass(frozen=True)
class TestResult:
    """Outcome of a two-sided hypothesis test; frozen so a stored result cannot drift from what was computed."""

    __test__ = False  # the name starts with "Test": keep pytest from trying to collect it

    statistic: float
    p_value: float
    test: str


@dataclass(frozen=True)
class DeLongResult(TestResult):
    """DeLong test outcome, carrying both AUCs so the reported numbers and the test come from one computation."""

    auc_a: float
    auc_b: float
    variance: float  # estimated Var(auc_a - auc_b)


# --------------------------------------------------------------------------------------------------- input checks


def _as_1d(x: np.ndarray | Sequence[float], name: str, dtype: type = float) -> np.ndarray:
    """Accept ``(n,)`` or the ``(n, 1)`` column a model head often emits, but refuse anything that would ravel
    silently into the wrong pairing of labels and scores."""
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or an (n, 1) column), got shape {arr.shape}")
    return arr


def _as_labels(y: np.ndarray | Sequence[float]) -> np.ndarray:
    """Labels are validated rather than thresholded: a 0/1 vs -1/+1 or soft-label mix-up should fail loudly
    instead of producing a plausible-looking AUC."""
    arr = np.asarray(y)
    arr = _as_1d(arr, "y", dtype=arr.dtype if arr.dtype != object else float)
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5]
        raise ValueError(f"y must contain only 0/1 labels, found e.g. {bad.tolist()}")
    return arr.astype(bool)


def _check_same_length(y: np.ndarray, *preds: tuple[str, np.ndarray]) -> None:
    for name, p in preds:
        if p.shape[0] != y.shape[0]:
            raise ValueError(f"{name} has {p.shape[0]} rows but y has {y.shape[0]}")


# ------------------------------------------------------------------------------------------------------- metrics


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney rank-sum identity.

    Midranks make a tie between a positive and a negative count as half a win, which is what the pairwise
    definition (and sklearn) does; this matters for quantised or saturated CTR scores where ties are common.
    Sorting makes it O(n log n) instead of the O(n_pos * n_neg) pairwise count.

    Returns nan with only one class present, because the AUC is undefined there (a tiny long-tail bucket can
    easily contain no clicks) and nan renders as a missing cell rather than crashing the leaderboard. nan
    predictions (a diverged model) also give nan.
    """
    yb = _as_labels(y)
    pf = _as_1d(p, "p")
    _check_same_length(yb, ("p", pf))
    n_pos = int(yb.sum())
    n_neg = yb.size - n_pos
    if n_pos == 0 or n_neg == 0 or np.isnan(pf).any():
        return float("nan")
    ranks = _sps.rankdata(pf)  # "average" method = midranks
    return float((ranks[yb].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def tied_pair_fraction(y: np.ndarray, p: np.ndarray) -> float:
    """The fraction of (positive, negative) pairs whose scores are equal.

    `auc` counts each such pair as half a win, so breaking the ties one way or the other could move the AUC by
    up to half this fraction: the board reports that bound, because scores that tie (a bf16 logit has 8
    significant bits; a collapsed model gives one value) make part of the AUC a coin toss. nan with one class.
    """
    yb = _as_labels(y)
    pf = _as_1d(p, "p")
    _check_same_length(yb, ("p", pf))
    n_pos = int(yb.sum())
    n_neg = yb.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, group = np.unique(pf, return_inverse=True)
    pos = np.bincount(group, weights=yb.astype(np.float64))
    neg = np.bincount(group, weights=(~yb).astype(np.float64))
    return float((pos * neg).sum() / (n_pos * n_neg))


def logloss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy.

    Clipping to ``[eps, 1 - eps]`` keeps a single over-confident prediction from turning the whole mean into
    inf; ``eps = 1e-7`` is the float32-safe value Keras/TF-era CTR code used, so numbers stay comparable.
    An empty input gives nan (no samples, no loss) instead of numpy's mean-of-empty warning.
    """
    yb = _as_labels(y)
    pf = _as_1d(p, "p")
    _check_same_length(yb, ("p", pf))
    if yb.size == 0:
        return float("nan")
    pc = np.clip(pf, eps, 1.0 - eps)
    return float(-np.mean(np.where(yb, np.log(pc), np.log1p(-pc))))


def rel_impr(value: float, base: float) -> float:
    """Rel.Impr as the CTR papers print it: ``(value - base) / base``.

    The sign is left raw (no flipping for lower-is-better metrics such as logloss) so the number matches the
    papers' tables; callers decide how to present it. A zero base gives nan: the ratio is undefined, and a
    missing cell is more honest than inf.
    """
    if base == 0:
        return float("nan")
    return (float(value) - float(base)) / float(base)


def rela_impr(auc_value: float, auc_base: float) -> float:
    """RelaImpr from the DCN/DeepFM line of work: ``(auc_value - 0.5) / (auc_base - 0.5) - 1``.

    Measuring from 0.5 (a random ranker) rather than 0 makes small AUC gaps readable as a share of the lift the
    baseline achieved over chance. A baseline at exactly 0.5 has no lift to compare against, so this is nan.
    """
    denom = float(auc_base) - 0.5
    if denom == 0:
        return float("nan")
    return (float(auc_value) - 0.5) / denom - 1.0


# --------------------------------------------------------------------------------------------------- DeLong test


def _placements(yb: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components V10 (one per positive) and V01 (one per negative), via Sun & Xu (2014).

    For a positive x, V10(x) = fraction of negatives scored below x (ties count 1/2); for a negative y,
    V01(y) = fraction of positives scored above y. Sun & Xu observe that the difference between x's midrank in
    the pooled sample and its midrank among positives is exactly the (tie-weighted) number of negatives below
    it, so three sorts replace the O(n_pos * n_neg) pairwise comparison.
    """
    pos = p[yb]
    neg = p[~yb]
    m, n = pos.size, neg.size
    tz = _sps.rankdata(np.concatenate([pos, neg]))
    tx = _sps.rankdata(pos)
    ty = _sps.rankdata(neg)
    v10 = (tz[:m] - tx) / n
    v01 = 1.0 - (tz[m:] - ty) / m
    return v10, v01


def auc_variance(y: np.ndarray, p: np.ndarray) -> float:
    """DeLong variance of a single AUC, ``S10 / n_pos + S01 / n_neg``.

    Exposed so confidence intervals on one model's AUC use the same estimator as the paired test. Needs at
    least two samples of each class (the sample covariances use ddof=1); otherwise nan.
    """
    yb = _as_labels(y)
    pf = _as_1d(p, "p")
    _check_same_length(yb, ("p", pf))
    m = int(yb.sum())
    n = yb.size - m
    if m < 2 or n < 2 or np.isnan(pf).any():
        return float("nan")
    v10, v01 = _placements(yb, pf)
    return float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)


def delong_test(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> DeLongResult:
    """DeLong, DeLong & Clarke-Pearson (1988) test of H0: AUC_a == AUC_b on the *same* test rows.

    Two models scored on one test set make correlated AUC errors (hard rows are hard for both), so treating the
    AUCs as independent badly overstates the variance of their difference; DeLong's structural components
    estimate the covariance nonparametrically. The midrank algorithm of Sun & Xu (2014) keeps it O(n log n),
    which matters on CTR test sets with millions of rows.

    ``variance`` is Var(auc_a - auc_b) = Var(V10_a - V10_b) / n_pos + Var(V01_a - V01_b) / n_neg, which equals
    the quadratic form ``L (S10 / n_pos + S01 / n_neg) L'`` with ``L = [1, -1]``; it is computed from the
    differences so that two models with the same ranking get a variance of exactly 0, not rounding noise.
    In that case the models are indistinguishable by AUC, so z = 0 and p = 1 (rather than 0/0).

    With fewer than two samples of either class (or nan predictions) the test is undefined and every number in
    the result is nan.
    """
    yb = _as_labels(y)
    pa = _as_1d(p_a, "p_a")
    pb = _as_1d(p_b, "p_b")
    _check_same_length(yb, ("p_a", pa), ("p_b", pb))
    m = int(yb.sum())
    n = yb.size - m
    nan = float("nan")
    if m < 2 or n < 2 or np.isnan(pa).any() or np.isnan(pb).any():
        return DeLongResult(statistic=nan, p_value=nan, test="delong", auc_a=nan, auc_b=nan, variance=nan)

    v10_a, v01_a = _placements(yb, pa)
    v10_b, v01_b = _placements(yb, pb)
    auc_a = float(v10_a.mean())
    auc_b = float(v10_b.mean())
    variance = float(np.var(v10_a - v10_b, ddof=1) / m + np.var(v01_a - v01_b, ddof=1) / n)
    if variance <= 0.0:
        return DeLongResult(statistic=0.0, p_value=1.0, test="delong", auc_a=auc_a, auc_b=auc_b, variance=0.0)
    z = (auc_a - auc_b) / math.sqrt(variance)
    p_value = float(2.0 * _sps.norm.sf(abs(z)))
    return DeLongResult(statistic=float(z), p_value=p_value, test="delong", auc_a=auc_a, auc_b=auc_b, variance=variance)


# ---------------------------------------------------------------------------------------------- paired t-test


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided paired t-test over matched runs (e.g. the same seeds for model and baseline).

    Pairing removes the seed-to-seed variation the two models share. The result is nan (statistic and p) when
    the test has no meaning instead of being a number that looks authoritative:

    * fewer than 2 pairs: the sample variance of the differences has zero degrees of freedom;
    * all differences identical (zero variance): t is +-inf or 0/0. A constant gap across seeds usually means a
      deterministic pipeline or a copied result, not infinite evidence, and reporting p = 0 would mark it "**".
      "Identical" is judged up to rounding (spread within ~32 ulp of the largest input): ``0.8 - 0.7`` and
      ``0.9 - 0.8`` differ in the last bit, and a t built on that bit is noise.
    * non-finite inputs: there is no variance to estimate.

    Those cases are decided up front (the tolerance is wider than scipy's own catastrophic-cancellation check),
    so scipy never gets to emit its divide-by-zero or precision-loss RuntimeWarning.
    """
    xa = _as_1d(a, "a")
    xb = _as_1d(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"paired_ttest needs equal-length samples, got {xa.size} and {xb.size}")
    nan = float("nan")
    d = xa - xb
    # The rounding error of a - b scales with the operands, not with the difference: a constant gap of 1e-5
    # between AUCs near 0.7 carries rounding noise of ~1e-16, which a tolerance relative to |d| would take
    # for real variance (and report p ~ 0).
    scale = max(np.abs(xa).max(initial=0.0), np.abs(xb).max(initial=0.0)) if d.size else 0.0
    if d.size < 2 or not np.isfinite(d).all() or np.ptp(d) <= 32 * np.finfo(float).eps * scale:
        return TestResult(statistic=nan, p_value=nan, test="paired_t")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # belt and braces; the guard above covers known cases
        res = _sps.ttest_rel(xa, xb)
    return TestResult(statistic=float(res.statistic), p_value=float(res.pvalue), test="paired_t")


# ------------------------------------------------------------------------------------- multiple comparisons


def correct_pvalues(p_values: Sequence[float], method: str) -> np.ndarray:
    """Adjust p-values for the many model-vs-baseline comparisons one leaderboard makes.

    * ``"holm"``: Holm (1979) step-down, controls the family-wise error rate without Bonferroni's loss of power.
    * ``"bh"``: Benjamini-Hochberg (1995) step-up, controls the false discovery rate; the right choice when a
      leaderboard is a screen rather than a confirmatory claim.
    * ``"none"``: pass-through, for tables that must match papers that did not correct.

    Adjusted values are made monotone in the raw p-values (as in R's ``p.adjust``) and capped at 1, so they can be
    compared directly with alpha. nan entries (tests that could not be run) stay nan and are left out of the
    count m: a missing test should not make the others harder to pass.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown p-value correction method {method!r}; expected one of {', '.join(_METHODS)}")
    p = _as_1d(p_values, "p_values").copy()
    finite = ~np.isnan(p)
    if ((p[finite] < 0) | (p[finite] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    if method == "none":
        return p
    idx = np.flatnonzero(finite)
    m = idx.size
    if m == 0:
        return p
    order = np.argsort(p[idx], kind="stable")
    sorted_p = p[idx][order]
    rank = np.arange(1, m + 1, dtype=float)
    if method == "holm":
        adj = np.maximum.accumulate((m - rank + 1) * sorted_p)
    else:  # "bh"
        adj = np.minimum.accumulate((sorted_p * m / rank)[::-1])[::-1]
    adj = np.minimum(adj, 1.0)
    out = p
    out[idx[order]] = adj
    return out


def significance_mark(p_adjusted: float, alpha: float = 0.05) -> str:
    """Table marker: ``"**"`` below alpha/5 (0.01 at the default), ``"*"`` below alpha, else ``""``.

    nan means the test could not be run, which must never read as significant, so it gets no mark.
    """
    p = float(p_adjusted)
    if math.isnan(p):
        return ""
    if p < alpha / 5.0:
        return "**"
    if p < alpha:
        return "*"
    return ""


# ----------------------------------------------------------------------------------------------------- buckets


def bucket_metrics(y: np.ndarray, p: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """AUC, logloss and size per long-tail bucket (e.g. cold users, rare items).

    Overall AUC is dominated by head traffic; buckets show whether a model (say, a PLM-based one) helps where
    ID embeddings are starved. ``n`` is a float so every value in the nested dict has one type when serialised;
    an empty or single-class bucket yields nan metrics instead of an error. Masks must be boolean arrays over
    the same rows: an integer array would be silently read as indices, so it is rejected.
    """
    yb = _as_labels(y)
    pf = _as_1d(p, "p")
    _check_same_length(yb, ("p", pf))
    out: dict[str, dict[str, float]] = {}
    for name, mask in masks.items():
        mk = np.asarray(mask)
        if mk.ndim == 2 and mk.shape[1] == 1:
            mk = mk[:, 0]
        if mk.dtype != bool:
            raise ValueError(f"mask {name!r} must be boolean, got dtype {mk.dtype}")
        if mk.shape != yb.shape:
            raise ValueError(f"mask {name!r} has shape {mk.shape}, expected {yb.shape}")
        ys, ps = yb[mk], pf[mk]
        out[name] = {"auc": auc(ys, ps), "logloss": logloss(ys, ps), "n": float(mk.sum())}
    return out
