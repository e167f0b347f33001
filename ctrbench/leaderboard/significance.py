"""Significance marks with a direction and a protocol, the way the papers mean them.

The papers run 5–10 seeds and a two-sided t-test, so a mark says "this gap survives training randomness". That is
the default here (``test: auto``): with ≥ 3 seeds paired with the baseline, a paired t-test over seeds on test AUC.
With 1–2 seeds there is no estimate of training randomness, so DeLong's test on each seed's test set is used and
the footnote says those marks reflect test-set noise only. Either way a cell is marked only when the adjusted p is
below alpha *and* every seed's AUC difference has the same sign, and improvements and degradations get different
marks. The correction's family is the suite's ``significance.compare`` (or every config vs its baseline), printed
on the board, so two boards that test the same pair say which family each verdict belongs to.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ctrbench.errors import CtrbenchError
from ctrbench.leaderboard.board import Board, dataset_of, seed_of, test_auc
from ctrbench.leaderboard.formatting import DASH, esc, mark_md, pval, table
from ctrbench.stats import correct_pvalues, delong_test, paired_ttest
from ctrbench.store import StoredRun
from ctrbench.suite import ConfigKey

log = logging.getLogger(__name__)

# Marks: improvement / degradation, at adjusted p < alpha and < alpha / 5.
BETTER, MUCH_BETTER, WORSE, MUCH_WORSE = "*", "**", "†", "††"
MIN_SEEDS_FOR_TTEST = 3
CORRECTION_TEXT = {"holm": "Holm correction", "bh": "Benjamini–Hochberg correction", "none": "no correction"}


@dataclass(frozen=True)
class Comparison:
    """One config vs its baseline on one dataset, over the seeds both have.

    ``diffs`` are per-seed test-AUC differences (config − baseline); ``delong_p`` the per-seed DeLong p-values
    (details; they decide the mark only when the DeLong protocol is used); ``p_value`` the p of ``test``
    (``paired_t`` or ``delong``: the largest p over seeds); ``p_adjusted`` corrected over the board's family (nan
    when the test could not be run: such a comparison never gets a mark)."""

    config: ConfigKey
    baseline: ConfigKey
    dataset: str
    seeds: tuple[str, ...]
    diffs: tuple[float, ...]
    delong_p: tuple[float, ...]
    test: str
    p_value: float
    p_adjusted: float
    mark: str

    @property
    def same_sign(self) -> bool:
        d = np.asarray(self.diffs)
        return bool(d.size) and (bool(np.all(d > 0)) or bool(np.all(d < 0)))

    @property
    def mean_diff(self) -> float:
        return float(np.mean(self.diffs)) if self.diffs else math.nan


def mark_for(p_adjusted: float, diffs: tuple[float, ...], alpha: float) -> str:
    """The mark of one comparison: none unless adjusted p < alpha and every seed's difference has one sign."""
    d = np.asarray(diffs, dtype=float)
    if math.isnan(p_adjusted) or p_adjusted >= alpha or not d.size:
        return ""
    if np.all(d > 0):
        return MUCH_BETTER if p_adjusted < alpha / 5 else BETTER
    if np.all(d < 0):
        return MUCH_WORSE if p_adjusted < alpha / 5 else WORSE
    return ""


def protocol(suite_test: str, n_seeds: int) -> str:
    if suite_test == "ttest":
        return "paired_t"
    if suite_test == "delong":
        return "delong"
    return "paired_t" if n_seeds >= MIN_SEEDS_FOR_TTEST else "delong"


def compare(board: Board) -> list[Comparison]:
    sig = board.suite.significance
    pending: list[tuple[ConfigKey, ConfigKey, str, tuple[str, ...], tuple[float, ...], tuple[float, ...], str,
                       float]] = []
    cache: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for dataset in board.datasets:
        for key in board.configs:
            base = board.tested.get(key)
            if base is None or not board.all_runs(dataset, key):
                continue
            runs = {seed_of(r.spec): r for r in board.all_runs(dataset, key)}
            base_runs = {seed_of(r.spec): r for r in board.all_runs(dataset, base)}
            seeds = tuple(s for s in runs if s in base_runs)
            diffs = tuple(test_auc(runs[s]) - test_auc(base_runs[s]) for s in seeds)
            delong = tuple(_delong_p(runs[s], base_runs[s], cache) for s in seeds)
            test = protocol(sig.test, len(seeds))
            if not seeds:
                p = math.nan
            elif test == "paired_t":
                p = float(paired_ttest([test_auc(runs[s]) for s in seeds],
                                       [test_auc(base_runs[s]) for s in seeds]).p_value)
            else:
                p = math.nan if any(math.isnan(x) for x in delong) else max(delong)
            pending.append((key, base, dataset, seeds, diffs, delong, test, p))
    adjusted = correct_pvalues([x[-1] for x in pending], sig.correction) if pending else np.array([])
    return [Comparison(key, base, dataset, seeds, diffs, delong, test, p, float(adj),
                       mark_for(float(adj), diffs, sig.alpha))
            for (key, base, dataset, seeds, diffs, delong, test, p), adj in zip(pending, adjusted, strict=True)]


def load_test_predictions(run: StoredRun) -> tuple[np.ndarray, np.ndarray] | None:
    """A run's test labels and scores, or None (logged) when its predictions cannot be read."""
    try:
        preds = run.predictions()
        return np.asarray(preds["test_y"]), np.asarray(preds["test_p"])
    except (OSError, KeyError, ValueError) as exc:
        log.warning("run %s: no usable test predictions (%s); its DeLong test is skipped",
                                            run.spec.run_id, exc)
        return None


def _delong_p(run: StoredRun, base: StoredRun, cache: dict[str, tuple[np.ndarray, np.ndarray] | None]) -> float:
    for r in (run, base):
        if r.spec.run_id not in cache:
            cache[r.spec.run_id] = load_test_predictions(r)
    pa, pb = cache[run.spec.run_id], cache[base.spec.run_id]
    if pa is None or pb is None:
        return math.nan
    if pa[0].shape != pb[0].shape or not np.array_equal(pa[0], pb[0]):
        raise CtrbenchError(
            f"runs {run.spec.run_id} and {base.spec.run_id} ({dataset_of(run.spec)}, seed {seed_of(run.spec)}) were "
            "scored on different test rows; DeLong's test needs the same test set (give every run of the suite the "
            "same train.eval_max_samples; was the dataset changed between runs? see 'ctrbench show')")
    return float(delong_test(pa[0], pa[1], pb[1]).p_value)


def _labels(key: ConfigKey) -> str:
    return ", ".join(f"{k}={v}" for k, v in key) or "—"


def note(board: Board) -> list[str]:
    """The footnote: which test, which correction over which family, what each mark means; then the details."""
    sig = board.suite.significance
    if not board.suite.baseline:
        return ["No baseline is set in the suite, so there are no significance tests and no Rel.Impr."]
    comps = board.comparisons()
    if not board.tested:
        return [f"The baseline `{_labels(tuple(board.suite.baseline.items()))}` has nothing to be compared with on "
                "this board (it holds one configuration), so there are no tests and no Rel.Impr."]
    tested = [c for c in comps if not math.isnan(c.p_value)]
    bases = list(dict.fromkeys(board.tested[k] for k in board.configs if k in board.tested))
    base_text = ", ".join(f"`{_labels(b)}`" for b in bases)
    per_row = " (per row: each config vs the baseline that shares its row)" if len(bases) > 1 else ""
    family = ("the suite's `significance.compare`: " + "; ".join(f"`{_labels(tuple(p.items()))}`"
                                                                for p in sig.compare)
              if sig.compare else "every config vs its baseline")
    used = sorted({c.test for c in comps})
    parts = [f"Significance vs the baseline {base_text}{per_row}, on the seeds each config shares with its "
             "baseline (means and Rel.Impr use the same seeds)."]
    if "paired_t" in used:
        parts.append("Test: two-sided paired t-test over seeds on test AUC (the papers' protocol"
                     + (f"; used where a cell has ≥ {MIN_SEEDS_FOR_TTEST} paired seeds" if sig.test == "auto" else "")
                     + ").")
    if "delong" in used:
        where = "; used where a cell has fewer than 3 paired seeds" if sig.test == "auto" else ""
        parts.append("Test: two-sided DeLong test on each seed's test set, the largest p over seeds"
                     f"{where} — these marks reflect test-set noise only, not training randomness.")
    parts.append(f"{CORRECTION_TEXT[sig.correction]} over {len(tested)} comparison{'s' if len(tested) != 1 else ''}"
                 f" (the family: {family}); α = {sig.alpha:g}.")
    parts.append(f"A cell is marked only when its adjusted p < α and every seed's AUC difference has the same sign: "
                 f"{mark_md(BETTER)} / {mark_md(MUCH_BETTER)} significant improvement (adjusted p < {sig.alpha:g} / "
                 f"< {sig.alpha / 5:g}), {WORSE} / {MUCH_WORSE} significant degradation.")
    untested = len(comps) - len(tested)
    if untested:
        parts.append(f"Untested (no mark): {untested} — no common seeds with the baseline, missing predictions, "
                     "or too few seeds for the test.")
    lines = [" ".join(parts)]
    if comps:
        body = [[esc(board.label(c.config)), esc(board.label(c.baseline)), esc(c.dataset), str(len(c.seeds)),
                 _signed(c.mean_diff), "yes" if c.same_sign else "no", "paired t" if c.test == "paired_t" else "DeLong",
                 pval(c.p_value), pval(c.p_adjusted), " ".join(pval(p) for p in c.delong_p) or DASH, mark_md(c.mark)]
                for c in comps]
        lines += ["", "<details><summary>p-values</summary>", "",
                  *table(["Model", "Baseline", "Dataset", "Seeds", "Mean ΔAUC", "Same sign", "Test", "p",
                          "p adjusted", "DeLong p per seed", "mark"], body,
                         ["l", "l", "l", "r", "r", "l", "l", "r", "r", "l", "l"]),
                  "", "</details>"]
    return lines


def _signed(x: float) -> str:
    return DASH if math.isnan(x) else f"{x:+.4f}"
