"""Leaderboards: one generated markdown file per suite, laid out like the paper table the suite mirrors.

The board is a pure function of the suite and the stored runs: rows follow the suite's own order (not the order
the store happens to list runs in), every number is formatted with a fixed precision, and the provenance footer
holds only values read from the runs (the one date on it is the latest run's start). Regenerating a board from
an unchanged store therefore gives the same bytes, so a diff of ``leaderboards/`` shows exactly what changed.

Layouts (``suite.analysis``):

* ``overall`` / ``ablation``: configs × datasets with AUC, Logloss, Rel.Impr, then cost columns;
* ``compat``: per dataset, CTR backbone (rows) × PLM (columns), one table for AUC and one for Logloss;
* ``longtail``: per dataset, AUC and Logloss on the user × item head/tail buckets;
* ``efficiency``: per dataset, parameters, inference and training time next to AUC.

Significance marks compare each config with the suite's baseline on the same test rows (`compare_to_baseline`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ctrbench.errors import CtrbenchError
from ctrbench.progress import duration
from ctrbench.spec import RunSpec
from ctrbench.stats import correct_pvalues, delong_test, paired_ttest, rel_impr, significance_mark
from ctrbench.store import StoredRun, atomic_write_bytes
from ctrbench.suite import Suite, expand, is_baseline

__all__ = ["Comparison", "compare_to_baseline", "render_leaderboard", "write_leaderboard"]

log = logging.getLogger(__name__)

ConfigKey = tuple[tuple[str, str], ...]

DASH = "—"
NONE_PLM = "N/A (backbone alone)"
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
TEST_TEXT = {
    "delong": "DeLong's test vs the baseline on each seed's test set; the largest p over seeds "
              "(significant only if every seed is)",
    "ttest": "paired t-test over seeds of test AUC vs the baseline",
}
CORRECTION_TEXT = {"holm": "Holm correction", "bh": "Benjamini–Hochberg correction", "none": "no correction"}


@dataclass(frozen=True)
class Comparison:
    """One config vs the baseline on one dataset. ``config`` is the run's `RunSpec.config_key`; ``p_adjusted`` is
    corrected over every comparison of the board (nan when the test could not be run; it never gets a mark)."""

    config: ConfigKey
    dataset: str
    p_value: float
    p_adjusted: float
    mark: str
    test: str


# -- indexing the runs -------------------------------------------------------------------------------------

@dataclass
class _Board:
    """The runs of a suite arranged by (dataset, config), in the suite's order."""

    suite: Suite
    datasets: list[str]
    configs: list[ConfigKey]
    specs: dict[ConfigKey, RunSpec]  # a representative spec per config (for its label)
    ok: dict[tuple[str, ConfigKey], list[StoredRun]]  # sorted by seed
    failed: list[StoredRun]
    runs: list[StoredRun]  # everything shown, sorted by run id
    superseded: int
    missing: int
    _comparisons: list[Comparison] | None = field(default=None, repr=False)
    _by_cell: dict[tuple[str, ConfigKey], Comparison] | None = field(default=None, repr=False)

    def label(self, key: ConfigKey) -> str:
        return self.specs[key].config_label()

    def is_baseline(self, key: ConfigKey) -> bool:
        return is_baseline(self.suite, dict(key))

    def baseline_for(self, key: ConfigKey) -> ConfigKey | None:
        """The baseline config that ``key`` is compared with: the only one, or (when the baseline labels match
        several configs, e.g. ``{plm: none}`` in a CTR × PLM grid) the one that agrees on every other label."""
        if self.is_baseline(key):
            return None
        bases = [c for c in self.configs if self.is_baseline(c)]
        if len(bases) <= 1:
            return bases[0] if bases else None
        others = {k: v for k, v in key if k not in self.suite.baseline}
        for b in bases:
            if all(dict(b).get(k) == v for k, v in others.items()):
                return b
        return bases[0]

    def cell(self, dataset: str, key: ConfigKey) -> list[StoredRun]:
        return self.ok.get((dataset, key), [])

    def has_failed(self, dataset: str, key: ConfigKey) -> bool:
        return any(_dataset(r.spec) == dataset and r.spec.config_key() == key for r in self.failed)

    def comparisons(self) -> list[Comparison]:
        if self._comparisons is None:
            self._comparisons = _compare(self)
        return self._comparisons

    def comparison(self, dataset: str, key: ConfigKey) -> Comparison | None:
        if self._by_cell is None:
            self._by_cell = {(c.dataset, c.config): c for c in self.comparisons()}
        return self._by_cell.get((dataset, key))


def _dataset(spec: RunSpec) -> str:
    return spec.labels.get("dataset", spec.dataset.name)


def _seed(spec: RunSpec) -> str:
    return spec.labels.get("seed", str(spec.seed))


def _index(suite: Suite, runs: Iterable[StoredRun]) -> _Board:
    expected = expand(suite)
    expected_ids = {s.run_id for s in expected}
    runs = list(runs)
    # One run per (dataset, config, seed): a run of the current suite beats a stale one with the same labels,
    # an ok run beats a failed one, and the run id breaks ties so the choice never depends on input order.
    chosen: dict[tuple[str, ConfigKey, str], StoredRun] = {}
    for r in runs:
        k = (_dataset(r.spec), r.spec.config_key(), _seed(r.spec))
        rank = (r.spec.run_id in expected_ids, r.result.ok, r.spec.run_id)
        old = chosen.get(k)
        if old is None or rank > (old.spec.run_id in expected_ids, old.result.ok, old.spec.run_id):
            chosen[k] = r
    kept = sorted(chosen.values(), key=lambda r: r.spec.run_id)

    datasets: list[str] = []
    configs: list[ConfigKey] = []
    specs: dict[ConfigKey, RunSpec] = {}
    for spec in [*expected, *(r.spec for r in runs)]:
        if _dataset(spec) not in datasets:
            datasets.append(_dataset(spec))
        key = spec.config_key()
        if key not in specs:
            configs.append(key)
            specs[key] = spec

    ok: dict[tuple[str, ConfigKey], list[StoredRun]] = {}
    for r in kept:
        if r.result.ok:
            ok.setdefault((_dataset(r.spec), r.spec.config_key()), []).append(r)
    for v in ok.values():
        v.sort(key=lambda r: (r.spec.seed, _seed(r.spec)))
    order = {c: i for i, c in enumerate(configs)}
    dorder = {d: i for i, d in enumerate(datasets)}
    failed = sorted((r for r in kept if not r.result.ok),
                    key=lambda r: (order[r.spec.config_key()], dorder[_dataset(r.spec)], r.spec.seed))
    present = {r.spec.run_id for r in kept}
    return _Board(suite, datasets, configs, specs, ok, failed, kept, superseded=len(runs) - len(kept),
                  missing=len(expected_ids - present))


# -- significance --------------------------------------------------------------------------------------------

def compare_to_baseline(suite: Suite, runs: Sequence[StoredRun]) -> list[Comparison]:
    """Test every non-baseline config against the baseline config on each dataset.

    ``suite.significance.test``: ``"delong"`` runs DeLong's test on each seed's test predictions (seeds matched by
    their ``seed`` label) and keeps the largest p over seeds, so a config is significant only if it is on every
    seed; ``"ttest"`` is a paired t-test over seeds of the stored test AUC. All p-values of the board are then
    adjusted together with ``suite.significance.correction`` and marked with ``suite.significance.alpha``.
    Comparisons that cannot be tested (no baseline runs, no common seeds, missing predictions) have nan p.
    Raises `CtrbenchError` when a config and the baseline were scored on different test rows.
    """
    return _index(suite, runs).comparisons()


def _compare(board: _Board) -> list[Comparison]:
    sig = board.suite.significance
    pending: list[tuple[ConfigKey, str, float]] = []
    baseline_preds: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for dataset in board.datasets:
        for key in board.configs:
            base = board.baseline_for(key)
            if base is None or not board.cell(dataset, key):
                continue
            runs = {_seed(r.spec): r for r in board.cell(dataset, key)}
            base_runs = {_seed(r.spec): r for r in board.cell(dataset, base)}
            seeds = [s for s in runs if s in base_runs]
            if sig.test == "ttest":
                p = _ttest_p([runs[s] for s in seeds], [base_runs[s] for s in seeds])
            else:
                p = _delong_p([runs[s] for s in seeds], [base_runs[s] for s in seeds], baseline_preds)
            pending.append((key, dataset, p))
    adjusted = correct_pvalues([p for _, _, p in pending], sig.correction) if pending else np.array([])
    return [Comparison(key, dataset, p, float(adj), significance_mark(adj, sig.alpha), sig.test)
            for (key, dataset, p), adj in zip(pending, adjusted, strict=True)]


def _ttest_p(runs: list[StoredRun], base: list[StoredRun]) -> float:
    a = [r.result.metrics.get("test_auc", math.nan) for r in runs]
    b = [r.result.metrics.get("test_auc", math.nan) for r in base]
    return float(paired_ttest(a, b).p_value)


def _test_predictions(run: StoredRun) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        preds = run.predictions()
        return np.asarray(preds["test_y"]), np.asarray(preds["test_p"])
    except (OSError, KeyError, ValueError) as exc:
        log.warning("run %s: no usable test predictions (%s); its DeLong test is skipped", run.spec.run_id, exc)
        return None


def _delong_p(runs: list[StoredRun], base: list[StoredRun],
              cache: dict[str, tuple[np.ndarray, np.ndarray] | None]) -> float:
    if not runs:
        return math.nan
    worst = 0.0
    for run, b in zip(runs, base, strict=True):
        if b.spec.run_id not in cache:
            cache[b.spec.run_id] = _test_predictions(b)
        pb, pa = cache[b.spec.run_id], _test_predictions(run)
        if pa is None or pb is None:
            return math.nan
        if pa[0].shape != pb[0].shape or not np.array_equal(pa[0], pb[0]):
            raise CtrbenchError(
                f"runs {run.spec.run_id} and {b.spec.run_id} ({_dataset(run.spec)}, seed {_seed(run.spec)}) were "
                "scored on different test rows; DeLong's test needs the same test set (give every run of the suite the "
                "same train.eval_max_samples; was the dataset changed between runs? see 'ctrbench show')")
        p = delong_test(pa[0], pa[1], pb[1]).p_value
        if math.isnan(p):
            return math.nan
        worst = max(worst, p)
    return worst


# -- formatting ----------------------------------------------------------------------------------------------

def _esc(text: str) -> str:
    """Make text safe inside a markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _mark(mark: str) -> str:
    return mark.replace("*", "\\*")


def _values(runs: list[StoredRun], metric: str) -> list[float]:
    return [float(r.result.metrics.get(metric, math.nan)) for r in runs]


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _mean_std(values: Sequence[float], digits: int = 4) -> str:
    """``mean ± sample std`` (ddof=1); the ± is left out for one value, where the spread is undefined."""
    if not len(values):
        return DASH
    mean = _mean(values)
    if math.isnan(mean):
        return DASH
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(values, ddof=1)):.{digits}f}"


def _num(x: float, digits: int = 4) -> str:
    return DASH if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on and text not in (DASH, "") else text


def _best(means: dict[Any, float], higher: bool, digits: int = 4) -> set[Any]:
    """Keys whose mean equals the best one as displayed (ties in the printed digits are all bold)."""
    finite = {k: round(v, digits) for k, v in means.items() if not math.isnan(v)}
    if not finite:
        return set()
    top = max(finite.values()) if higher else min(finite.values())
    return {k for k, v in finite.items() if v == top}


def _percent(x: float) -> str:
    if math.isnan(x):
        return DASH
    text = f"{100 * x:+.2f}%"
    return "+0.00%" if text == "-0.00%" else text


def _params(n: float) -> str:
    if math.isnan(n):
        return DASH
    n = int(round(n))
    if n < 1_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1e3:.1f}K"
    return f"{n / 1e6:.2f}M"


def _seconds(x: float) -> str:
    """Training time with a precision that suits its size: 0.04, 3.2, 1234."""
    if math.isnan(x):
        return DASH
    return f"{x:.2f}" if x < 1 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def _median(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.median(vals)) if vals else math.nan


def _duration(seconds: float) -> str:
    return duration(seconds, prose=True)


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = [":---" if a == "l" else "---:" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |",
            *("| " + " | ".join(row) + " |" for row in rows)]


# -- layouts -------------------------------------------------------------------------------------------------

def _row_label(board: _Board, key: ConfigKey) -> str:
    label = _esc(board.label(key))
    return f"{label} (baseline)" if board.is_baseline(key) else label


def _auc_cell(board: _Board, dataset: str, key: ConfigKey, bold: bool) -> str:
    runs = board.cell(dataset, key)
    if not runs:
        return "failed" if board.has_failed(dataset, key) else DASH
    comp = board.comparison(dataset, key)
    return _bold(_mean_std(_values(runs, "test_auc")), bold) + (_mark(comp.mark) if comp else "")


def _logloss_cell(board: _Board, dataset: str, key: ConfigKey, bold: bool) -> str:
    runs = board.cell(dataset, key)
    if not runs:
        return "failed" if board.has_failed(dataset, key) else DASH
    return _bold(_mean_std(_values(runs, "test_logloss")), bold)


def _mean_auc(board: _Board, dataset: str, key: ConfigKey | None) -> float:
    return math.nan if key is None else _mean(_values(board.cell(dataset, key), "test_auc"))


def _best_keys(board: _Board, dataset: str, configs: list[ConfigKey], metric: str, higher: bool) -> set[ConfigKey]:
    means = {k: _mean(_values(board.cell(dataset, k), metric)) for k in configs if board.cell(dataset, k)}
    return _best(means, higher)


def _costs(board: _Board, dataset: str, key: ConfigKey) -> tuple[float, float, float, int]:
    runs = board.cell(dataset, key)
    params = _median([float(r.result.n_params) for r in runs])
    train = _mean([float(r.result.train_seconds) for r in runs]) if runs else math.nan
    infer_vals = [float(r.result.infer_ms_per_batch) for r in runs if not math.isnan(r.result.infer_ms_per_batch)]
    return params, train, _mean(infer_vals), len(runs)


def _joined(costs: list[tuple[float, float, float, int]], i: int, fmt: Any) -> str:
    """One cost column: the value per dataset, joined by " / " (a dash where the config has no ok run)."""
    return " / ".join(fmt(c[i]) if c[3] else DASH for c in costs)


def _overall(board: _Board, row_title: str) -> list[str]:
    multi = len(board.datasets) > 1
    with_rel = bool(board.suite.baseline)
    header = [row_title]
    for d in board.datasets:
        prefix = f"{_esc(d)} " if multi else ""
        header += [f"{prefix}AUC", f"{prefix}Logloss"] + ([f"{prefix}Rel.Impr"] if with_rel else [])
    header += ["Params", "Train s", "Infer ms/128", "Seeds"]
    best_auc = {d: _best_keys(board, d, board.configs, "test_auc", True) for d in board.datasets}
    best_ll = {d: _best_keys(board, d, board.configs, "test_logloss", False) for d in board.datasets}
    rows = []
    for key in board.configs:
        row = [_row_label(board, key)]
        costs = []
        for d in board.datasets:
            row.append(_auc_cell(board, d, key, key in best_auc[d]))
            row.append(_logloss_cell(board, d, key, key in best_ll[d]))
            base = board.baseline_for(key)
            if with_rel and board.cell(d, key) and base is not None:
                row.append(_percent(rel_impr(_mean_auc(board, d, key), _mean_auc(board, d, base))))
            elif with_rel:
                row.append(DASH)
            costs.append(_costs(board, d, key))

        row += [_joined(costs, 0, _params), _joined(costs, 1, _seconds),
                _joined(costs, 2, lambda x: _num(x, 2)), " / ".join(str(c[3]) for c in costs)]
        rows.append(row)
    lines = [] if multi else [f"Dataset: `{board.datasets[0]}` (test split)." if board.datasets else "", ""]
    lines += _table(header, rows)
    if multi:
        lines += ["", "Params, Train s, Infer ms/128 and Seeds are given per dataset, in column order."]
    return lines


def _axis(spec: RunSpec, name: str) -> str:
    if name in spec.labels:
        return spec.labels[name]
    ref = getattr(spec, name, None)
    return ref.name if ref is not None else "none"


def _compat(board: _Board) -> list[str]:
    """CTR backbone × PLM, one AUC and one Logloss table per dataset."""
    rows: list[tuple[tuple[str, str], ...]] = []
    cols: list[str] = []
    where: dict[tuple[tuple[tuple[str, str], ...], str], ConfigKey] = {}
    row_names: dict[tuple[tuple[str, str], ...], str] = {}
    for key in board.configs:
        spec = board.specs[key]
        rkey = tuple((k, v) for k, v in key if k != "plm")
        col = _axis(spec, "plm")
        if rkey not in rows:
            rows.append(rkey)
            row_names[rkey] = " · ".join(v for _, v in rkey) or _axis(spec, "ctr")
        if col not in cols:
            cols.append(col)
        where[(rkey, col)] = key
    header = ["CTR model", *(NONE_PLM if c == "none" else _esc(c) for c in cols)]
    lines: list[str] = []
    for d in board.datasets:
        lines += [f"### {_esc(d)}", ""]
        for title, metric, higher, cell in (("AUC", "test_auc", True, _auc_cell),
                                             ("Logloss", "test_logloss", False, _logloss_cell)):
            best = _best_keys(board, d, list(where.values()), metric, higher)
            body = []
            for r in rows:
                line = [_esc(row_names[r])]
                for c in cols:
                    key = where.get((r, c))
                    line.append(DASH if key is None else cell(board, d, key, key in best))
                body.append(line)
            lines += [f"**{title}**", "", *_table(header, body), ""]
    return lines[:-1]


def _bucket_names(board: _Board, dataset: str, known: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    present = {name for runs in (board.cell(dataset, k) for k in board.configs) for r in runs
               for name in r.result.buckets}
    return [(n, t) for n, t in known if n in present]


def _bucket_mean(runs: list[StoredRun], bucket: str, metric: str) -> float:
    vals = [float(r.result.buckets[bucket].get(metric, math.nan)) for r in runs if bucket in r.result.buckets]
    return _mean(vals) if vals else math.nan


def _bucket_table(board: _Board, d: str, buckets: list[tuple[str, str]], configs: list[ConfigKey],
                  overall_logloss: bool = False) -> list[str]:
    """One row per config: AUC and Logloss on each bucket (means over seeds), then the overall test metrics."""
    header = ["Model"]
    columns: list[tuple[str, str, bool]] = []  # (bucket, metric, higher is better)
    for name, title in buckets:
        header += [f"{title} AUC", f"{title} Logloss"]
        columns += [(name, "auc", True), (name, "logloss", False)]
    header += ["Overall AUC", *(["Overall Logloss"] if overall_logloss else [])]
    means = {(k, c): _bucket_mean(board.cell(d, k), c[0], c[1]) for k in configs for c in columns}
    best = {c: _best({k: means[(k, c)] for k in configs}, c[2]) for c in columns}
    best_overall = _best_keys(board, d, configs, "test_auc", True)
    best_ll = _best_keys(board, d, configs, "test_logloss", False)
    body = []
    for k in configs:
        runs = board.cell(d, k)
        if not runs:
            body.append([_row_label(board, k), *(["failed"] * (len(header) - 1))])
            continue
        comp = board.comparison(d, k)
        overall = _bold(_num(_mean_auc(board, d, k)), k in best_overall) + (_mark(comp.mark) if comp else "")
        row = [_row_label(board, k), *(_bold(_num(means[(k, c)]), k in best[c]) for c in columns), overall]
        if overall_logloss:
            row.append(_logloss_cell(board, d, k, k in best_ll))
        body.append(row)
    return _table(header, body)


def _headtail(board: _Board) -> list[str]:
    """SLLM4CTR Table 1: AUC and Logloss on head items (top ``head_fraction`` by train frequency) and tail items."""
    lines: list[str] = []
    for d in board.datasets:
        configs = [k for k in board.configs if board.cell(d, k) or board.has_failed(d, k)]
        buckets = _bucket_names(board, d, HEADTAIL_BUCKETS)
        lines += [f"### {_esc(d)}", "", *_bucket_table(board, d, buckets, configs, overall_logloss=True)]
        sizes = _bucket_sizes(board, d, buckets)
        lines += ["", f"Test rows per group: {sizes}.", ""] if sizes else [""]
    b = board.suite.buckets
    lines.append(f"Head items: the top {b.head_fraction:.0%} of items by number of train interactions "
                 f"(`buckets.head_fraction: {b.head_fraction:g}`); tail items: all others, including items unseen "
                 "in train. Group columns are means over seeds.")
    return lines


def _longtail(board: _Board) -> list[str]:
    lines: list[str] = []
    for d in board.datasets:
        lines += [f"### {_esc(d)}", ""]
        configs = [k for k in board.configs if board.cell(d, k) or board.has_failed(d, k)]
        cross = _bucket_names(board, d, CROSS_BUCKETS)
        lines += _bucket_table(board, d, cross, configs)
        marginal = _bucket_names(board, d, MARGINAL_BUCKETS)
        if marginal:
            mbest = {n: _best({k: _bucket_mean(board.cell(d, k), n, "auc") for k in configs}, True)
                     for n, _ in marginal}
            mbody = [[_row_label(board, k), *(_bold(_num(_bucket_mean(board.cell(d, k), n, "auc")), k in mbest[n])
                                              for n, _ in marginal)]
                     for k in configs if board.cell(d, k)]
            lines += ["", "AUC on the marginal buckets:", "", *_table(["Model", *(t for _, t in marginal)], mbody)]
        sizes = _bucket_sizes(board, d, cross + marginal)
        if sizes:
            lines += ["", f"Test rows per bucket: {sizes}."]
        lines.append("")
    b = board.suite.buckets
    lines.append(f"Tail users (items) are the bottom {b.tail_fraction:.0%} of users (items) by interaction count in "
                 f"the train split (`buckets.tail_fraction: {b.tail_fraction:g}`); head = the others. Bucket "
                 "columns are means over seeds.")
    if any(n in ("items_head", "items_tail", "head", "tail") for d in board.datasets
           for n, _ in _bucket_names(board, d, MARGINAL_BUCKETS)):
        lines.append(f"Items head/tail (SLLM4CTR): the top {b.head_fraction:.0%} of items by train frequency "
                     f"(`buckets.head_fraction: {b.head_fraction:g}`) vs the rest.")
    return lines


def _bucket_sizes(board: _Board, dataset: str, buckets: list[tuple[str, str]]) -> str:
    for k in board.configs:
        for r in board.cell(dataset, k):
            parts = [f"{title} {int(r.result.buckets[n].get('n', 0)):,}" for n, title in buckets
                     if n in r.result.buckets and not math.isnan(r.result.buckets[n].get("n", math.nan))]
            if parts:
                return ", ".join(parts)
    return ""


def _efficiency(board: _Board) -> list[str]:
    lines: list[str] = []
    for d in board.datasets:
        lines += [f"### {_esc(d)}", ""]
        configs = [k for k in board.configs if board.cell(d, k) or board.has_failed(d, k)]
        costs = {k: _costs(board, d, k) for k in configs if board.cell(d, k)}
        best_p = _best({k: c[0] for k, c in costs.items()}, False, 0)
        best_i = _best({k: c[2] for k, c in costs.items()}, False, 2)
        fastest = _seconds(min((c[1] for c in costs.values()), default=math.nan))
        best_t = {k for k, c in costs.items() if _seconds(c[1]) == fastest != DASH}
        best_auc = _best_keys(board, d, configs, "test_auc", True)
        body = []
        for k in configs:
            if k not in costs:
                body.append([_row_label(board, k), *(["failed"] * 4)])
                continue
            p, t, i, _ = costs[k]
            body.append([_row_label(board, k), _bold(_params(p), k in best_p), _bold(_num(i, 2), k in best_i),
                         _bold(_seconds(t), k in best_t), _auc_cell(board, d, k, k in best_auc)])
        lines += [*_table(["Model", "Params", "Infer ms/128", "Train s", "AUC"], body), ""]
    lines.append("Params: the parameter count the run reported (median over seeds); Infer ms/128: milliseconds per "
                 "inference batch of 128 rows; Train s: training time in seconds; both means over seeds. The "
                 "lowest cost and the best AUC are in bold.")
    return lines


# -- notes and provenance ------------------------------------------------------------------------------------

def _significance_note(board: _Board) -> list[str]:
    sig = board.suite.significance
    if not board.suite.baseline:
        return ["No baseline is set in the suite, so there are no significance tests and no Rel.Impr."]
    base = ", ".join(f"{k}={v}" for k, v in board.suite.baseline.items())
    comps = board.comparisons()
    tested = [c for c in comps if not math.isnan(c.p_value)]
    correction = CORRECTION_TEXT[sig.correction]
    text = (f"Significance (baseline `{base}`): {TEST_TEXT[sig.test]}; {correction} over {len(tested)} "
            f"comparison{'s' if len(tested) != 1 else ''}; \\* p<{sig.alpha:g}, \\*\\* p<{sig.alpha / 5:g} "
            "(adjusted p).")
    untested = len(comps) - len(tested)
    if untested:
        text += (f" Untested (no mark): {untested} — no common seeds with the baseline, missing predictions, "
                 "or too few seeds for the test.")
    lines = [text]
    if comps:
        body = [[_esc(board.label(c.config)), _esc(c.dataset), _pval(c.p_value), _pval(c.p_adjusted),
                 _mark(c.mark)] for c in comps]
        lines += ["", "<details><summary>p-values</summary>", "",
                  *_table(["Model", "Dataset", "p", "p adjusted", "mark"], body, ["l", "l", "r", "r", "l"]),
                  "", "</details>"]
    return lines


def _pval(p: float) -> str:
    return DASH if math.isnan(p) else f"{p:.3g}"


def _distinct(values: Iterable[Any]) -> list[str]:
    return sorted({str(v) for v in values if v not in (None, "")})


def _date(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), tz=timezone.utc).date().isoformat()
    try:
        return datetime.fromisoformat(str(value)).date().isoformat()
    except ValueError:
        return str(value)[:10]


def _dataset_line(name: str, fingerprint: str, splits: dict[str, Any], train_used: Any) -> str:
    parts = [f"`{_esc(name)}`"]
    if fingerprint:
        parts.append(f"fingerprint `{fingerprint}`")
    sizes = " · ".join(f"{k} {int(splits[k]):,}" for k in ("train", "valid", "test") if k in splits)
    if sizes:
        parts.append(sizes)
    line = ", ".join(parts)
    if isinstance(train_used, (int, float)) and "train" in splits and train_used < splits["train"]:
        line += f" (train subsampled to {int(train_used):,} rows)"
    return line


def _provenance(board: _Board) -> list[str]:
    provs = [(r, r.provenance()) for r in board.runs]
    datasets: set[tuple[str, str, tuple[tuple[str, int], ...], Any]] = set()
    for _, p in provs:
        d = p.get("dataset") or {}
        if d:
            splits = tuple(sorted((str(k), int(v)) for k, v in (d.get("splits") or {}).items()))
            datasets.add((str(d.get("name", "")), str(d.get("fingerprint") or ""), splits, d.get("train_used")))
    lines = ["## Provenance", "", "Ran on:", ""]
    names = [d[0] for d in datasets]
    for name, fp, splits, used in sorted(datasets, key=lambda x: (x[0], x[1], x[2], str(x[3]))):
        warn = " — ⚠ this dataset has several fingerprints: the runs did not all see the same data" \
            if names.count(name) > 1 and len({x[1] for x in datasets if x[0] == name}) > 1 else ""
        lines.append(f"- Dataset {_dataset_line(name, fp, dict(splits), used)}{warn}")
    scored = sorted({int((p.get("dataset") or {}).get("test_scored", 0)) for _, p in provs} - {0})
    test_sizes = {int((p.get("dataset") or {}).get("splits", {}).get("test", 0)) for _, p in provs}
    if scored and max(scored) < max(test_sizes, default=0):
        lines.append(f"- Scored on a fixed random subset of {', '.join(f'{n:,}' for n in scored)} test rows "
                     "(`train.eval_max_samples`, the same rows for every run, so paired tests stay paired)")
    plms = _distinct(p.get("plm") for _, p in provs)
    lines.append(f"- PLMs: {', '.join(plms) if plms else 'none'}")
    devices = _distinct(p.get("device") for _, p in provs)
    if devices:
        lines.append(f"- Devices: {', '.join(devices)}")
    versions = []
    for pkg in ("ctrbench", "torch", "python", "numpy", "transformers"):
        vals = _distinct(p.get(pkg) for _, p in provs)
        if vals:
            versions.append(f"{pkg} {', '.join(vals)}")
    if versions:
        lines.append(f"- Versions: {' · '.join(versions)}")
    commits = _distinct(_commit_text(p) for _, p in provs if p.get("git_commit"))
    if commits:
        lines.append(f"- Git commits: {', '.join(f'`{c}`' for c in commits)}")
    plugins = _distinct(_plugin_text(v) for _, p in provs for v in (p.get("plugins") or {}).values())
    if plugins:
        lines.append(f"- Plugins: {', '.join(plugins)}")
    seeds = sorted({r.spec.seed for r in board.runs})
    lines.append(f"- Seeds: {', '.join(str(s) for s in seeds)}")
    n_ok = sum(1 for r in board.runs if r.result.ok)
    lines.append(f"- Runs: {len(board.runs)} ({n_ok} ok, {len(board.runs) - n_ok} failed)")
    wall = math.fsum(float(p.get("wall_seconds") or 0.0) for _, p in provs)
    lines.append(f"- Total wall time: {_duration(wall)} (sum over runs)")
    dates = [d for d in (_date(p.get("started_at")) for _, p in provs) if d]
    if dates:
        lines.append(f"- Latest run: {max(dates)}")
    return lines


def _commit_text(prov: dict[str, Any]) -> str:
    commit = str(prov["git_commit"])
    short = commit if commit == "unknown" else commit[:7]
    return short + ("+dirty" if prov.get("git_dirty") else "")


def _plugin_text(value: Any) -> str:
    """A plugin origin ``{"name", "plugin", "distribution"}`` as ``plugin (distribution version)``."""
    if isinstance(value, dict):
        plugin, dist = value.get("plugin"), value.get("distribution")
        if plugin and dist:
            return f"{plugin} ({dist})"
        return str(plugin or dist or value.get("name") or "")
    return str(value)


# -- the board -----------------------------------------------------------------------------------------------

def render_leaderboard(suite: Suite, runs: Sequence[StoredRun], *, generated_by: str = "") -> str:
    """The suite's leaderboard as GitHub markdown; the same suite and runs always give the same string."""
    board = _index(suite, runs)
    lines = [f"# {suite.name}", ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    origin = f" by `{generated_by}`" if generated_by else " by ctrbench"
    lines += [f"_Generated{origin} from the result store; do not edit by hand._", ""]
    if not board.runs:
        lines += ["No stored runs yet.", ""]
    elif suite.analysis == "compat":
        lines += [*_compat(board), ""]
    elif suite.analysis == "longtail":
        lines += [*_longtail(board), ""]
    elif suite.analysis == "headtail":
        lines += [*_headtail(board), ""]
    elif suite.analysis == "efficiency":
        lines += [*_efficiency(board), ""]
    else:
        lines += [*_overall(board, "Variant" if suite.analysis == "ablation" else "Model"), ""]

    if board.failed:
        n = len(board.failed)
        lines += [f"{n} run{'s' if n != 1 else ''} failed:", ""]
        for r in board.failed:
            err = (r.result.error or "no error message").strip().splitlines()
            first = (err[0] if err else "no error message").replace("`", "'")
            lines.append(f"- {_esc(r.spec.config_label())} on {_esc(_dataset(r.spec))} seed {_seed(r.spec)}: "
                         f"`{first}`")
        lines.append("")
    if board.missing:
        lines += [f"{board.missing} of {len(expand(suite))} runs of this suite are not in the store yet.", ""]
    if board.superseded:
        n = board.superseded
        lines += [f"{n} stored run{'s' if n != 1 else ''} with the same labels as a run of the current suite "
                  f"(an older configuration) {'are' if n != 1 else 'is'} left out.", ""]

    notes = ["AUC and Logloss on the test split: mean ± sample standard deviation over seeds (the ± is left out "
             "for a single seed); the best value per dataset is in bold."]
    if suite.analysis in ("overall", "ablation") and suite.baseline:
        notes.append("Rel.Impr = (AUC − AUC_base) / AUC_base, on the mean test AUC over seeds, vs the baseline row.")
    if board.runs:
        lines += ["---", "", *notes, "", *_significance_note(board), "", *_provenance(board), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_leaderboard(suite: Suite, runs: Sequence[StoredRun], out_dir: str | Path, *,
                      generated_by: str = "") -> Path:
    """Write ``<out_dir>/<suite.name>.md`` atomically and return its path."""
    path = Path(out_dir) / f"{suite.name}.md"
    atomic_write_bytes(path, render_leaderboard(suite, runs, generated_by=generated_by).encode("utf-8"))
    return path
