"""The runs of a suite arranged by (dataset, config), in the suite's order, with each config's reference configs.

Every number a board prints for a compared config comes from the seeds it shares with its baseline (its *paired*
seeds): the mean, the Rel.Impr and the test see the same runs, and a cell with fewer seeds than the suite plans
says so ("2/5 seeds")."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ctrbench.leaderboard.formatting import mean
from ctrbench.spec import RunSpec
from ctrbench.stats import rel_impr
from ctrbench.store import StoredRun
from ctrbench.suite import ConfigKey, Suite, baseline_pairs, expand, matches, partner

if TYPE_CHECKING:
    from ctrbench.leaderboard.significance import Comparison


def dataset_of(spec: RunSpec) -> str:
    return spec.labels.get("dataset", spec.dataset.name)


def seed_of(spec: RunSpec) -> str:
    return spec.labels.get("seed", str(spec.seed))


def test_auc(run: StoredRun) -> float:
    value = run.result.metrics.get("test_auc", math.nan)
    return float(value) if value is not None else math.nan


@dataclass
class Board:
    """What a layout renders: runs by cell, the suite's comparisons, and the numbers derived from them."""

    suite: Suite
    datasets: list[str]
    configs: list[ConfigKey]
    specs: dict[ConfigKey, RunSpec]  # a representative spec per config (for its label)
    ok: dict[tuple[str, ConfigKey], list[StoredRun]]  # ok runs with a finite test AUC, sorted by seed
    failed: list[StoredRun]
    runs: list[StoredRun]  # everything shown, sorted by run id
    superseded: int
    missing: int
    tested: dict[ConfigKey, ConfigKey]  # config -> its baseline, for the configs the suite tests
    references: dict[ConfigKey, ConfigKey]  # every non-baseline config -> its baseline (means and Rel.Impr)
    _comparisons: list[Comparison] | None = field(default=None, repr=False)

    @property
    def planned_seeds(self) -> int:
        return len(self.suite.seeds)

    def label(self, key: ConfigKey) -> str:
        return self.specs[key].config_label()

    def is_baseline(self, key: ConfigKey) -> bool:
        return bool(self.suite.baseline) and matches(dict(key), self.suite.baseline)

    def baseline_for(self, key: ConfigKey) -> ConfigKey | None:
        return self.references.get(key)

    def all_runs(self, dataset: str, key: ConfigKey) -> list[StoredRun]:
        return self.ok.get((dataset, key), [])

    def cell(self, dataset: str, key: ConfigKey) -> list[StoredRun]:
        """The runs behind a cell's numbers: for a config with a baseline, only the seeds both have (when they
        share any); for the others, every ok run."""
        runs = self.all_runs(dataset, key)
        base = self.references.get(key)
        if base is None:
            return runs
        paired = paired_seeds(runs, self.all_runs(dataset, base))
        return [r for r in runs if seed_of(r.spec) in paired] or runs

    def has_failed(self, dataset: str, key: ConfigKey) -> bool:
        return any(dataset_of(r.spec) == dataset and r.spec.config_key() == key for r in self.failed)

    def seeds_text(self, dataset: str, key: ConfigKey) -> str:
        """"5", or "3/5" when a cell has fewer usable seeds than the suite plans."""
        k = len(self.cell(dataset, key))
        return str(k) if k >= self.planned_seeds else f"{k}/{self.planned_seeds}"

    def mean_auc(self, dataset: str, key: ConfigKey, seeds: set[str] | None = None) -> float:
        runs = self.all_runs(dataset, key) if seeds is not None else self.cell(dataset, key)
        return mean([test_auc(r) for r in runs if seeds is None or seed_of(r.spec) in seeds])

    def rel_impr(self, dataset: str, key: ConfigKey) -> tuple[float, float]:
        """(Rel.Impr, the reference AUC it divides by) for a row, per the suite's ``rel_impr.mode``; nan when the
        row has none. Both AUCs are means over the seeds the two configs share."""
        mode = self.suite.rel_impr
        if mode.mode == "proposed_over_row":
            if matches(dict(key), mode.proposed):
                return math.nan, math.nan
            prop = partner(key, [c for c in self.configs if matches(dict(c), mode.proposed)])
            if prop is None:
                return math.nan, math.nan
            num, den = prop, key
        else:
            base = self.references.get(key)
            if base is None:
                return math.nan, math.nan
            num, den = key, base
        seeds = paired_seeds(self.all_runs(dataset, num), self.all_runs(dataset, den))
        if not seeds:
            return math.nan, math.nan
        ref = self.mean_auc(dataset, den, seeds)
        return rel_impr(self.mean_auc(dataset, num, seeds), ref), ref

    def comparisons(self) -> list[Comparison]:
        if self._comparisons is None:
            from ctrbench.leaderboard.significance import compare

            self._comparisons = compare(self)
        return self._comparisons

    def comparison(self, dataset: str, key: ConfigKey) -> Comparison | None:
        return next((c for c in self.comparisons() if c.dataset == dataset and c.config == key), None)


def paired_seeds(runs: Iterable[StoredRun], base: Iterable[StoredRun]) -> set[str]:
    return {seed_of(r.spec) for r in runs} & {seed_of(r.spec) for r in base}


def index(suite: Suite, runs: Iterable[StoredRun]) -> Board:
    expected = expand(suite)
    expected_ids = {s.run_id for s in expected}
    runs = list(runs)
    # One run per (dataset, config, seed): a run of the current suite beats a stale one with the same labels,
    # an ok run beats a failed one, and the run id breaks ties so the choice never depends on input order.
    chosen: dict[tuple[str, ConfigKey, str], StoredRun] = {}
    for r in runs:
        k = (dataset_of(r.spec), r.spec.config_key(), seed_of(r.spec))
        rank = (r.spec.run_id in expected_ids, r.result.ok, r.spec.run_id)
        old = chosen.get(k)
        if old is None or rank > (old.spec.run_id in expected_ids, old.result.ok, old.spec.run_id):
            chosen[k] = r
    kept = sorted(chosen.values(), key=lambda r: r.spec.run_id)

    datasets: list[str] = []
    configs: list[ConfigKey] = []
    specs: dict[ConfigKey, RunSpec] = {}
    for spec in [*expected, *(r.spec for r in runs)]:
        if dataset_of(spec) not in datasets:
            datasets.append(dataset_of(spec))
        key = spec.config_key()
        if key not in specs:
            configs.append(key)
            specs[key] = spec

    ok: dict[tuple[str, ConfigKey], list[StoredRun]] = {}
    for r in kept:
        if r.result.ok and math.isfinite(test_auc(r)):
            ok.setdefault((dataset_of(r.spec), r.spec.config_key()), []).append(r)
    for v in ok.values():
        v.sort(key=lambda r: (r.spec.seed, seed_of(r.spec)))
    order = {c: i for i, c in enumerate(configs)}
    dorder = {d: i for i, d in enumerate(datasets)}
    failed = sorted((r for r in kept if not r.result.ok),
                    key=lambda r: (order[r.spec.config_key()], dorder[dataset_of(r.spec)], r.spec.seed))
    present = {r.spec.run_id for r in kept}
    return Board(suite, datasets, configs, specs, ok, failed, kept, superseded=len(runs) - len(kept),
                 missing=len(expected_ids - present), tested=baseline_pairs(suite, configs),
                 references=baseline_pairs(suite, configs, tested_only=False))
