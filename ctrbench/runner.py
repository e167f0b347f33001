"""The library API behind ``ctrbench run``: run what a `Plan` (``ctrbench.plan``) says is not stored yet, and
hand back what happened. The CLI is a thin layer over `Plan`, `Session` and `run_suite`."""

from __future__ import annotations

import dataclasses
import importlib
import io
import logging
import os
import socket
import sys
import time
import traceback
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrbench.claims import where
from ctrbench.context import RunContext
from ctrbench.data.buckets import headtail_item_masks, longtail_masks
from ctrbench.data.cache import cache_root
from ctrbench.data.types import CTRData
from ctrbench.errors import CtrbenchError, DataError, RunError, SuiteError, UsageError
from ctrbench.kinds import PER_RUN
from ctrbench.kinds import kind as kind_of
from ctrbench.needs import check_data_needs
from ctrbench.plan import (
    STORED,
    Plan,
    adopt_identical_runs,
    check_device_name,
    check_threads,
    needs_run,
    plan,
    scoring_of,
    validate_components,
)
from ctrbench.plugins import DISABLE_ENV, Plugins, load_plugins
from ctrbench.protocols import Executor
from ctrbench.provenance import environment
from ctrbench.results import Predictions, RunResult
from ctrbench.spec import RunSpec, canonical_json
from ctrbench.stats import auc, bucket_metrics, logloss
from ctrbench.store import STAGES, ClaimLost, Store
from ctrbench.suite import Suite
from ctrbench.trainer import NullReporter, Reporter, TrainConfig, Trainer, eval_positions, resolve_device

log = logging.getLogger(__name__)

# Keyword arguments the runner itself passes to CTR factories; not settable from a suite.
CTR_RESERVED = kind_of("ctr").reserved
# The status of a result that says "another process holds this run's claim": not stored, not a failure;
# `run_suite` waits for that process and reports the result it stores.
CLAIMED = "claimed"


@dataclass
class Session:
    """Long-lived state of one ``ctrbench`` invocation: plugins, store, device, loaded datasets."""

    plugins: Plugins
    store: Store
    device: torch.device
    threads: int
    reporter: Reporter = field(default_factory=NullReporter)
    cache_dir: Path = field(default_factory=cache_root)
    device_request: str = "auto"  # what the user asked for; workers of other executors resolve it themselves
    invocation: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # marks the runs this call starts
    _datasets: dict[str, CTRData] = field(default_factory=dict)
    _env: dict[str, Any] | None = None
    _classes_checked: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, store_root: str | Path = "runs", device: str = "auto", threads: int | None = None,
               reporter: Reporter | None = None, plugins: Plugins | None = None,
               cache_dir: str | Path | None = None, check_device: bool = True,
               invocation: str | None = None) -> Session:
        """``threads``: torch CPU threads (default 1: parallel one-thread workers beat one process with many
        threads). ``check_device=False`` is for a process that only dispatches runs to workers (a cluster login
        node without a GPU may still send ``--device cuda`` runs to GPU nodes)."""
        threads = check_threads(1 if threads is None else threads)
        check_device_name(device)
        torch.set_num_threads(threads)  # explicit, so a worker never oversubscribes the CPU
        try:
            resolved = resolve_device(device)
        except RunError:
            if check_device:
                raise
            resolved = torch.device("cpu")
        session = cls(plugins=plugins or load_plugins(), store=Store(store_root), device=resolved,
                      threads=threads, reporter=reporter or NullReporter(),
                      cache_dir=Path(cache_dir) if cache_dir else cache_root(), device_request=device)
        if invocation:
            session.invocation = invocation
        return session

    def environment(self) -> dict[str, Any]:
        if self._env is None:
            self._env = environment(self.device, self.threads)
        return self._env

    def dataset(self, spec: RunSpec) -> CTRData:
        key = canonical_json([spec.dataset.name, spec.dataset.config])
        if key not in self._datasets:
            entry = self.plugins.registry("datasets").get(spec.dataset.name)
            plugin = entry.create(**spec.dataset.config)
            t = time.perf_counter()
            self._datasets[key] = plugin.load(self.cache_dir)
            log.info("dataset %s loaded in %.1f s", spec.dataset.name, time.perf_counter() - t)
        return self._datasets[key]


# -- one run ------------------------------------------------------------------------------------------

def _metrics(data: CTRData, preds: Predictions, scored: dict[str, np.ndarray]) -> dict[str, float]:
    """AUC/Logloss of each split on its scored positions (all rows unless ``train.eval_max_samples``)."""
    out: dict[str, float] = {}
    for split, p in (("valid", preds.valid), ("test", preds.test)):
        y = np.asarray(data.y[data.splits[split]], dtype=np.float64)
        if len(p) != len(y):
            raise RunError(f"method returned {len(p)} {split} predictions for {len(y)} rows")
        rows = scored[split]
        if not np.all(np.isfinite(p[rows])):
            raise RunError(f"method returned non-finite {split} predictions")
        out[f"{split}_auc"] = auc(y[rows], p[rows])
        out[f"{split}_logloss"] = logloss(y[rows], p[rows])
    if len(scored["test"]) < len(preds.test):
        out["test_rows_scored"] = float(len(scored["test"]))
    out.update(preds.extra)
    return out


def _buckets(data: CTRData, p: np.ndarray, suite_buckets: Any, rows: np.ndarray) -> dict[str, dict[str, float]]:
    y = np.asarray(data.y[data.splits["test"]], dtype=np.float64)
    masks = longtail_masks(data, "test", suite_buckets.tail_fraction)
    masks.update({f"items_{k}": v for k, v in headtail_item_masks(data, "test", suite_buckets.head_fraction).items()})
    return bucket_metrics(y[rows], p[rows], {k: np.asarray(v)[rows] for k, v in masks.items()})


def _scored_positions(spec: RunSpec, data: CTRData) -> dict[str, np.ndarray]:
    limit = spec.train.get("eval_max_samples")
    return {split: eval_positions(len(data.splits[split]), limit) for split in ("valid", "test")}


def check_scored_classes(spec: RunSpec, data: CTRData) -> None:
    """AUC needs both classes among the scored rows of valid and test: checked on the data before training,
    a `DataError` naming ``train.eval_max_samples`` (or the split) otherwise."""
    limit = spec.train.get("eval_max_samples")
    for split, rows in _scored_positions(spec, data).items():
        y = np.asarray(data.y[data.splits[split]])[rows]
        classes = np.unique(y)
        if len(classes) >= 2:
            continue
        only = f"all of class {int(classes[0])}" if len(classes) else "none"
        if limit is not None:
            raise DataError(f"train.eval_max_samples={limit}: the {len(rows)} scored {split} rows of dataset "
                            f"'{data.name}' are {only}, and AUC needs both classes; raise eval_max_samples "
                            f"(the {split} split has {len(data.splits[split])} rows) or remove it")
        raise DataError(f"dataset '{data.name}': the {len(rows)} {split} rows are {only}, and AUC needs both "
                        "classes")


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.buffer = io.StringIO()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.buffer.write(self.format(record) + "\n")


def claimed_result(spec: RunSpec, holder: dict[str, Any] | None) -> RunResult:
    """What a process reports for a run another live process holds: not stored, not failed (`CLAIMED`)."""
    who = where(holder) if holder else "another process"
    return RunResult(spec.run_id, CLAIMED, error=f"run {spec.run_id} is being computed by {who}")


def _attempt(session: Session) -> dict[str, Any]:
    """Who runs a run: its claim and its ``running.json`` marker."""
    return {"invocation": session.invocation, **_worker_info(session), "started_at": time.time(),
            "command": " ".join(sys.argv)[:500]}


def run_one(spec: RunSpec, session: Session, suite: Suite) -> RunResult:
    """Run and store one spec, under its claim (taken here unless the caller holds it; a run another live
    process holds is not run: the result's status is `CLAIMED`). Failures of the run itself are stored as
    failed results, not raised; data errors (missing or corrupt files) are raised because every run of that
    dataset would fail, and so are store write errors (`WriteError`: disk full, read-only)."""
    store = session.store
    if store.holds(spec):
        return _run_claimed(spec, session, suite)
    if store.claim(spec, _attempt(session)) is None:
        return claimed_result(spec, store.claimant(spec))
    try:
        return _run_claimed(spec, session, suite)
    finally:
        store.release(spec)


def _run_claimed(spec: RunSpec, session: Session, suite: Suite) -> RunResult:
    store = session.store
    store.begin(spec, _attempt(session))
    capture = _LogCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    prev_level = root.level
    root.setLevel(min(prev_level, logging.INFO) if prev_level else logging.INFO)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    preds: Predictions | None = None
    data: CTRData | None = None
    try:
        data = session.dataset(spec)
        classes_key = canonical_json([spec.dataset.name, spec.dataset.config, spec.train.get("eval_max_samples")])
        if classes_key not in session._classes_checked:
            check_scored_classes(spec, data)
            session._classes_checked.add(classes_key)
        method_entry = session.plugins.registry("methods").get(spec.method.name)
        check_data_needs(method_entry, data)
        method = method_entry.create(**spec.method.config)
        # a method's own defaults (an LLM's learning rate) for the train keys the suite leaves out
        train = {**getattr(method, "train_defaults", {}), **spec.train}
        trainer = Trainer(TrainConfig.from_dict(train), session.device, session.reporter,
                          run_name=f"{spec.config_label()} seed {spec.seed}", seed=spec.seed)
        ctx = RunContext(spec, data, session.plugins, trainer, session.device, session.reporter,
                         session.store.root / STAGES)
        preds = method.run(ctx)
        scored = _scored_positions(spec, data)
        result = RunResult(spec.run_id, "ok", _metrics(data, preds, scored),
                           _buckets(data, preds.test, suite.buckets, scored["test"]),
                           preds.n_params, preds.train_seconds, preds.infer_seconds, preds.infer_ms_per_batch,
                           preds.epochs, trainable_params=preds.trainable_params)
    except (DataError, KeyboardInterrupt):
        root.removeHandler(capture)
        root.setLevel(prev_level)
        raise
    except Exception as exc:  # one failed run must not stop the others
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, CtrbenchError):
            message = f"{type(exc).__name__}: {message}"
            log.error("run %s crashed:\n%s", spec.run_id, traceback.format_exc())
        else:
            log.error("run %s failed: %s", spec.run_id, message)
        result = RunResult(spec.run_id, "failed", error=message)
        preds = None
    finally:
        root.removeHandler(capture)
        root.setLevel(prev_level)
    provenance = {
        **session.environment(),
        "seed": spec.seed,
        "started_at": started,
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "plm": spec.plm.name if spec.plm else None,
        "scoring": scoring_of(suite),
        "plugins": _plugin_origins(spec, session.plugins),
        "worker": _worker_info(session),
    }
    predictions = None
    if data is not None:
        provenance["dataset"] = {"name": data.name, "fingerprint": data.fingerprint,
                                 "splits": data.split_sizes(),
                                 "train_used": min(data.split_sizes()["train"],
                                                   spec.train.get("max_samples") or 10**18),
                                 "test_scored": int(len(_scored_positions(spec, data)["test"]))}
        if preds is not None:
            # Only scored rows are stored: runs of one suite share them, so stored predictions pair up row by row.
            scored = _scored_positions(spec, data)
            predictions = {"valid_p": preds.valid[scored["valid"]], "test_p": preds.test[scored["test"]],
                           "valid_y": np.asarray(data.y[data.splits["valid"]], dtype=np.float32)[scored["valid"]],
                           "test_y": np.asarray(data.y[data.splits["test"]], dtype=np.float32)[scored["test"]]}
            if len(scored["test"]) < len(preds.test):
                predictions.update(valid_rows=scored["valid"], test_rows=scored["test"])
    try:
        store.finish(spec, result, provenance, predictions, capture.buffer.getvalue())
    except ClaimLost as exc:
        log.warning("%s", exc)
        return RunResult(spec.run_id, "failed", error=str(exc))
    session.plugins.notify_run_finished(spec, result)
    return result


def _worker_info(session: Session) -> dict[str, Any]:
    """Which process ran a run: where a multi-process executor put it, and with how many threads."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "threads": session.threads,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _plugin_origins(spec: RunSpec, plugins: Plugins) -> dict[str, dict[str, str]]:
    infos = {i.name: i for i in plugins.infos}
    out = {}
    for kind in PER_RUN:
        ref = getattr(spec, kind.key)
        if ref is None or ref.name not in plugins.registry(kind.name):
            continue
        plugin = plugins.registry(kind.name).get(ref.name).plugin
        info = infos.get(plugin)
        out[kind.key] = {"name": ref.name, "plugin": plugin,
                         "distribution": f"{info.distribution} {info.version}" if info else "?"}
    return out


# -- jobs: running specs in other processes -----------------------------------------------------------

@dataclass(frozen=True)
class RunJob:
    """What a worker process needs to run specs of one ``ctrbench run`` invocation; picklable, no handles.

    An executor that runs specs outside this process (``local-gpus``, ``ray``, ``slurm``) sends a job and a
    spec to a worker, which calls ``execute_job(job, spec)``: it builds a `Session` there (once per worker
    process) and calls the same `run_one` as the in-process executor, writing to the same store.
    Paths are absolute, so a worker with another working directory (a cluster node) finds the store.
    """

    suite: Suite
    store_root: str
    cache_dir: str
    device: str = "auto"  # the request, resolved in the worker ("auto" = the worker's GPU if it has one)
    threads: int = 1  # torch CPU threads in the worker: its share of the cores, never all of them
    rerun: str = "never"
    invocation: str = ""  # the id in the claims and running.json markers of this invocation's runs
    plugins: tuple[tuple[str, str, str], ...] = ()  # in-process plugins as (name, module, sys.path entry)
    env: tuple[tuple[str, str], ...] = ()  # environment the worker sets before loading plugins
    # run_id -> `Store.result_stamp` when the plan was made (with --rerun failed|all): a result stored since then
    # was computed by another process during this invocation and is not computed again
    stamps: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_session(cls, suite: Suite, session: Session, rerun: str = "never",
                     stamps: dict[str, Any] | None = None) -> RunJob:
        return cls(suite=suite, store_root=str(session.store.root.resolve()),
                   cache_dir=str(Path(session.cache_dir).resolve()), device=session.device_request,
                   threads=session.threads, rerun=rerun, invocation=session.invocation,
                   plugins=_shippable_plugins(session.plugins),
                   env=tuple((k, os.environ[k]) for k in (DISABLE_ENV,) if k in os.environ),
                   stamps=dict(stamps or {}))

    def for_worker(self, threads: int, gpus: float = 0) -> RunJob:
        """This job for a worker with ``threads`` CPU threads and ``gpus`` GPUs of its own (the executor
        pins them, so "cuda:N" becomes "cuda"; without a GPU a run is on the CPU)."""
        device = self.device
        if gpus and device.startswith("cuda"):
            device = "cuda"
        elif not gpus:
            if device.startswith("cuda"):
                raise SuiteError(f"{self.suite.path}: executor: --device {device} needs GPUs per run "
                                 "in the executor block (e.g. num_gpus: 1 / gpus: 1)")
            device = "cpu"
        return dataclasses.replace(self, threads=max(1, int(threads)), device=device)


def _shippable_plugins(plugins: Plugins) -> tuple[tuple[str, str, str], ...]:
    """Plugins registered in-process (``load_plugins(extra=...)``) that a worker can import by name."""
    out = []
    for info in plugins.infos:
        if info.distribution != "(in-process)" or info.status != "loaded":
            continue
        module = plugins.pm.get_plugin(info.name)
        file = getattr(module, "__file__", None)
        if not isinstance(module, types.ModuleType) or not file or sys.modules.get(module.__name__) is not module:
            log.debug("plugin '%s' is not an importable module; workers of other processes will not load it",
                      info.name)
            continue
        depth = module.__name__.count(".") + (2 if Path(file).name == "__init__.py" else 1)
        out.append((info.name, module.__name__, str(Path(file).resolve().parents[depth - 1])))
    return tuple(out)


_WORKER_SESSION: tuple[tuple[Any, ...], Session] | None = None


def _worker_session(job: RunJob) -> Session:
    """One session per worker process and job settings: datasets are loaded once per worker, not per run."""
    global _WORKER_SESSION
    key = (job.store_root, job.cache_dir, job.device, job.threads, job.plugins, job.env, job.invocation)
    if _WORKER_SESSION is None or _WORKER_SESSION[0] != key:
        for k, v in job.env:
            os.environ[k] = v
        extra = []
        for name, module, path in job.plugins:
            if path not in sys.path:
                sys.path.insert(0, path)
            extra.append((name, importlib.import_module(module)))
        session = Session.create(job.store_root, job.device, job.threads, plugins=load_plugins(extra=extra),
                                 cache_dir=job.cache_dir, invocation=job.invocation)
        _WORKER_SESSION = (key, session)
    return _WORKER_SESSION[1]


def _run_if_needed(spec: RunSpec, session: Session, suite: Suite, rerun: str,
                   stamps: dict[str, Any] | None = None) -> RunResult:
    """Run a spec of the plan unless another live process holds its claim (then the result's status is
    `CLAIMED` and `run_suite` comes back for it) or, read under the claim, the store now holds it: another
    process (a second `ctrbench run`, another executor) may have stored the run since the plan was made, and
    under ``rerun`` failed/all a result whose stamp changed since then is that process's, not to redo."""
    store = session.store
    if store.claim(spec, _attempt(session)) is None:
        return claimed_result(spec, store.claimant(spec))
    try:
        status = store.status(spec)
        if status in STORED:
            changed = stamps is not None and spec.run_id in stamps and store.result_stamp(spec) != stamps[spec.run_id]
            if changed or not needs_run(status, rerun):
                stored = store.load(spec.suite, spec.run_id)
                if stored is not None:
                    return stored.result
        return run_one(spec, session, suite)
    finally:
        store.release(spec)


def execute_job(job: RunJob, spec: RunSpec) -> RunResult:
    """Run one spec in a worker process (the entry point every multi-process executor calls there).

    Like `run_one`, a failing run is stored and returned as failed, and a `DataError` is raised."""
    return _run_if_needed(spec, _worker_session(job), job.suite, job.rerun, job.stamps)


def lost_run(spec: RunSpec, reason: str) -> RunResult:
    """The result an executor reports for a run whose worker died (killed, out of memory, node lost): it
    is not stored, its directory has no result.json, and the next ``ctrbench run`` runs it again."""
    reason = reason.strip().splitlines()[0] if reason.strip() else "no reason given"
    return RunResult(spec.run_id, "failed", error=f"the run did not finish: {reason} (not stored; the next "
                                                  "`ctrbench run` runs it again)")


@dataclass
class InProcessRun:
    """The ``run_one`` that `run_suite` hands an executor (the `ctrbench.protocols.RunOne` protocol):
    ``run_one(spec)`` runs a spec in this process (with this session's loaded datasets and progress bars);
    ``run_one.job`` is the picklable `RunJob` an executor sends to its workers, which call
    ``execute_job(run_one.job.for_worker(threads, gpus), spec)``."""

    job: RunJob
    session: Session
    suite: Suite

    def __call__(self, spec: RunSpec) -> RunResult:
        return _run_if_needed(spec, self.session, self.suite, self.job.rerun, self.job.stamps)

    @property
    def store(self) -> Store:
        """The store every run writes, wherever it runs."""
        return self.session.store

    @property
    def device(self) -> torch.device:
        """This process's device (workers resolve ``job.device`` themselves)."""
        return self.session.device

    def unshippable_plugins(self) -> list[str]:
        """Plugins registered in this process (``load_plugins(extra=...)``) that ``job`` cannot ship to a worker
        process: runs that may need them have to stay in this process."""
        shipped = {name for name, _, _ in self.job.plugins}
        return [i.name for i in self.session.plugins.infos
                if i.distribution == "(in-process)" and i.status == "loaded" and i.name not in shipped]


# -- a whole suite ------------------------------------------------------------------------------------

@dataclass
class SuiteOutcome:
    specs: list[RunSpec]
    skipped: list[RunSpec] = field(default_factory=list)
    results: list[RunResult] = field(default_factory=list)
    interrupted: bool = False
    elsewhere: list[str] = field(default_factory=list)  # run ids another process computed while this one waited

    @property
    def executed(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if not r.ok]


def create_executor(suite: Suite, plugins: Plugins) -> Executor:
    return plugins.registry("executors").get(suite.executor.name).create(**suite.executor.config)


def run_suite(plan_or_suite: Plan | Suite, session: Session, rerun: str | None = None,
              on_result: Callable[[RunSpec, RunResult], None] | None = None,
              executor: Executor | None = None, on_claimed: Callable[[RunSpec, str], None] | None = None,
              poll_seconds: float = 1.0) -> SuiteOutcome:
    """Run the runs of a `Plan` that the store did not hold when it was made (``Plan.todo``); given a `Suite`,
    make its plan first (``Plan.make`` with ``rerun``, default "never"). A plan carries its own ``rerun``.

    Executors yield results as runs finish, in any order; ``on_result`` is called for each. A run another live
    process holds (a second ``ctrbench run`` on the same store) is skipped, reported to ``on_claimed`` with a
    line naming the holder, and waited for at the end: its stored result is reported like the others (and
    listed in ``outcome.elsewhere``), or, if that process died or stored nothing, the run is computed here."""
    store = session.store
    if isinstance(plan_or_suite, Plan):
        the_plan = plan_or_suite
        if rerun is not None and rerun != the_plan.rerun:
            raise UsageError(f"run_suite: the plan was made with rerun={the_plan.rerun!r}, not {rerun!r}")
        if Path(the_plan.store_root).resolve() != store.root.resolve():
            raise UsageError(f"run_suite: the plan read store {the_plan.store_root}, the session writes "
                             f"{store.root}")
    else:
        the_plan = Plan.make(plan_or_suite, session.plugins, store, "never" if rerun is None else rerun)
    suite, rerun = the_plan.suite, the_plan.rerun
    todo = list(the_plan.todo)
    outcome = SuiteOutcome(list(the_plan.specs), skipped=list(the_plan.stored))
    executor = executor if executor is not None else create_executor(suite, session.plugins)
    by_id = {s.run_id: s for s in todo}
    stamps = dict(the_plan.stamps)
    run = InProcessRun(RunJob.from_session(suite, session, rerun, stamps), session, suite)

    def record(spec: RunSpec, result: RunResult) -> None:
        outcome.results.append(result)
        if on_result:
            on_result(spec, result)

    pending, waiting = todo, {}
    try:
        while pending or waiting:
            if pending:
                batch, pending = pending, []
                for result in executor.execute(batch, run):
                    spec = by_id[result.run_id]
                    if result.status != CLAIMED:
                        record(spec, result)
                        continue
                    if spec.run_id not in waiting:
                        log.info("%s; coming back to it", result.error)
                        if on_claimed:
                            on_claimed(spec, result.error)
                    waiting[spec.run_id] = spec
            if waiting:
                pending = _wait_for_claims(store, waiting, stamps, rerun, record, outcome, poll_seconds)
    except KeyboardInterrupt:
        outcome.interrupted = True
    return outcome


def _wait_for_claims(store: Store, waiting: dict[str, RunSpec], stamps: dict[str, Any], rerun: str,
                     record: Callable[[RunSpec, RunResult], None], outcome: SuiteOutcome,
                     poll_seconds: float) -> list[RunSpec]:
    """Wait until another process lets go of at least one of the ``waiting`` runs; record the results it
    stored and return the runs still to compute (it died, or stored nothing)."""
    while True:
        again = []
        for run_id, spec in list(waiting.items()):
            if store.claimant(spec) is not None:
                continue
            del waiting[run_id]
            stored = store.load(spec.suite, spec.run_id)
            changed = stored is not None and store.result_stamp(spec) != stamps.get(run_id)
            if stored is not None and (changed or not store.needs_run(spec, rerun)):
                outcome.elsewhere.append(run_id)
                record(spec, stored.result)
            else:
                again.append(spec)
        if again or not waiting:
            return again
        time.sleep(poll_seconds)


__all__ = ["CLAIMED", "InProcessRun", "Plan", "RunJob", "Session", "SuiteOutcome", "adopt_identical_runs",
           "check_device_name", "check_scored_classes", "check_threads", "claimed_result", "create_executor",
           "execute_job", "lost_run", "plan", "run_one", "run_suite", "scoring_of", "validate_components"]
