"""Planning a suite: its runs, checked against the registries, and what the store already holds of them.

A `Plan` is made once per ``ctrbench run``: the CLI prints from it (``--dry-run``, the "executing N of M runs"
line) and `ctrbench.runner.run_suite` executes it. Making one expands the suite once (``Suite.runs``), checks
every component name, config key and method need (`plan`), and reads each run's store entry once
(``Store.status``); runs other suites of the store computed with the same spec and scoring are copied in
(``adopt``). `run_suite` reads a run's entry again only under the run's claim, right before computing it,
because another process may have stored it since the plan was made.

No torch in this module (nor in what it imports), so ``ctrbench validate`` and ``ctrbench run --dry-run`` start
in well under a second plus the plugins' own imports.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctrbench.errors import PluginError, SuiteError, UsageError
from ctrbench.kinds import KINDS, PER_RUN
from ctrbench.needs import needs_problems
from ctrbench.plugins import Plugins
from ctrbench.registry import check_config
from ctrbench.spec import RunSpec, canonical_json
from ctrbench.store import RERUN_POLICIES, Store
from ctrbench.suite import Suite, expand

log = logging.getLogger(__name__)

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
STORED = ("ok", "failed")  # statuses of a run whose result is in the store


def check_device_name(device: str) -> str:
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise UsageError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    return device


def check_threads(threads: Any) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UsageError(f"--threads must be a whole number of at least 1, got {threads!r}")
    return threads


def check_rerun(rerun: Any) -> str:
    if rerun not in RERUN_POLICIES:
        raise UsageError(f"--rerun must be one of {', '.join(RERUN_POLICIES)}, got {rerun!r}")
    return rerun


def needs_run(status: str, rerun: str) -> bool:
    """Whether a run whose store status is ``status`` is computed under ``rerun`` (``Store.needs_run``'s rule,
    on a status already read)."""
    return rerun == "all" or status in ("missing", "partial") or (rerun == "failed" and status == "failed")


# -- validation against the registries ---------------------------------------------------------------

def validate_components(suite: Suite, specs: list[RunSpec], plugins: Plugins) -> None:
    """Every name exists, every config key is a real argument with a value of the annotated type, every
    required argument is set, and every run gives its method what the method declares it needs (`needs_problems`);
    one line naming the suite file and every problem found (not only the first)."""
    seen: set[str] = set()
    problems: list[str] = []
    unknown_names = False
    refs = [(kind, getattr(spec, kind.key)) for spec in specs for kind in PER_RUN]
    refs += [(kind, suite.executor) for kind in KINDS if not kind.per_run]
    for kind, ref in refs:
        if ref is None:
            continue
        sig = canonical_json([kind.key, ref.name, ref.config])
        if sig in seen:
            continue
        seen.add(sig)
        # per-run components are named by their registry name, as unknown-name errors do ("datasets 'x'")
        what = f"{kind.name if kind.per_run else kind.label} '{ref.name}'"
        try:
            entry = plugins.registry(kind.name).get(ref.name)
            check_config(entry.factory, ref.config, what, kind.reserved)
        except PluginError as exc:
            hint = ""
            if str(exc).startswith("unknown "):
                unknown_names = True
                hint = plugins.unregistered_hint(ref.name)
            problems.append(f"{kind.key}: {exc}{hint}")
    problems += needs_problems(specs, plugins)
    if problems:
        # the plugins that failed to import are named once, not after every name they may have held
        tail = plugins.failure_hint() if unknown_names else ""
        raise SuiteError(f"{suite.path}: {' | '.join(dict.fromkeys(problems))}{tail}")


def plan(suite: Suite, plugins: Plugins) -> list[RunSpec]:
    """The suite's runs, checked against the registries (`validate_components`); nothing is read from a store."""
    specs = expand(suite)
    validate_components(suite, specs, plugins)
    return specs


def scoring_of(suite: Suite) -> dict[str, Any]:
    """What a run's stored metrics depend on beyond its spec: the suite's bucket definitions."""
    return {"buckets": dataclasses.asdict(suite.buckets)}


# -- the plan ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """What ``ctrbench run`` will do, decided once: made by `Plan.make`, printed by the CLI, run by `run_suite`.

    ``status`` is each run's store status when the plan was made (after adoption): "ok", "failed", "partial"
    (started, never finished) or "missing"; with ``deep=True`` every file of a stored run was read
    (``Store.verify``). ``adopted``: run_id → the suite an identical run was copied from; ``reusable``: the same
    for a read-only plan, which copies nothing (so ``--dry-run`` does not list work adoption would skip).
    ``claimed``: run_id → the live claim another process held on a run to do (the run is waited for, not
    computed twice).
    ``stamps``: run_id → the stored result's identity (``Store.result_stamp``) for runs to redo under
    ``rerun`` failed/all, so a result another process stores meanwhile is recognised and not recomputed.
    """

    suite: Suite
    specs: tuple[RunSpec, ...]
    store_root: Path
    rerun: str = "never"
    status: Mapping[str, str] = field(default_factory=dict)
    adopted: Mapping[str, str] = field(default_factory=dict)
    reusable: Mapping[str, str] = field(default_factory=dict)
    claimed: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    stamps: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, suite: Suite, plugins: Plugins, store: Store, rerun: str = "never", *, read_only: bool = False,
             deep: bool = False) -> Plan:
        """Expand and check ``suite`` (`plan`) and read what ``store`` holds of each run, once.

        Unless ``read_only`` (``validate``, ``run --dry-run``), work folders killed processes left are swept
        first and identical runs of other suites are adopted; ``read_only`` writes nothing. ``deep`` reads every
        file of a stored run (``Store.verify``: a broken one is a `StoreError`), not only its result."""
        check_rerun(rerun)
        specs = tuple(plan(suite, plugins))
        if not read_only:
            store.sweep(suite.name)
        read = store.verify if deep else store.status
        status = {s.run_id: read(s) for s in specs}
        adopted: dict[str, str] = {}
        if not read_only and rerun != "all":
            adopted = _adopt(suite, store, [s for s in specs if needs_run(status[s.run_id], rerun)])
            status.update(dict.fromkeys(adopted, "ok"))
        reusable: dict[str, str] = {}
        if read_only and rerun != "all":
            scoring = scoring_of(suite)
            reusable = {s.run_id: found[0] for s in specs if needs_run(status[s.run_id], rerun)
                        and (found := store.identical_source(s, scoring)) is not None}
        todo = [s for s in specs if needs_run(status[s.run_id], rerun) and s.run_id not in reusable]
        claimed = {s.run_id: holder for s in todo if (holder := store.claimant(s)) is not None}
        stamps = {s.run_id: store.result_stamp(s) if status[s.run_id] in STORED else None
                  for s in todo} if rerun != "never" else {}
        return cls(suite, specs, store.root, rerun, status, adopted, reusable, claimed, stamps)

    @property
    def todo(self) -> tuple[RunSpec, ...]:
        """The runs to compute, in suite order."""
        return tuple(s for s in self.specs
                     if needs_run(self.status[s.run_id], self.rerun) and s.run_id not in self.reusable)

    @property
    def stored(self) -> tuple[RunSpec, ...]:
        """The runs the store holds and ``rerun`` keeps."""
        return tuple(s for s in self.specs if not needs_run(self.status[s.run_id], self.rerun))

    def count(self, status: str) -> int:
        return sum(1 for s in self.specs if self.status[s.run_id] == status)


def adopt_identical_runs(suite: Suite, store: Store, specs: list[RunSpec], rerun: str = "never") -> dict[str, str]:
    """Copy into this suite every run that another suite of the store already computed with the same spec and
    scoring (so two suites sharing a configuration compute it once). Returns run_id -> source suite.
    (`Plan.make` does this while it reads the store; this is the same for a list of specs.)"""
    if rerun == "all":
        return {}
    return _adopt(suite, store, [s for s in specs if store.needs_run(s, rerun)])


def _adopt(suite: Suite, store: Store, specs: list[RunSpec]) -> dict[str, str]:
    adopted: dict[str, str] = {}
    scoring = scoring_of(suite)
    for spec in specs:
        source = store.adopt_identical(spec, scoring)
        if source is not None:
            log.info("run %s: reused from suite %s (identical spec and scoring)", spec.run_id, source)
            adopted[spec.run_id] = source
    return adopted


__all__ = ["Plan", "adopt_identical_runs", "check_device_name", "check_rerun", "check_threads", "needs_run", "plan",
           "scoring_of", "validate_components"]
