"""The library API behind ``ctrbench run``: validate a suite against the registries, run what is not
stored yet, and hand back what happened. The CLI is a thin layer over `Session` and `run_suite`."""

from __future__ import annotations

import io
import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrbench.context import RunContext
from ctrbench.data.buckets import headtail_item_masks, longtail_masks
from ctrbench.data.cache import cache_root
from ctrbench.data.types import CTRData
from ctrbench.errors import CtrbenchError, DataError, PluginError, RunError, SuiteError
from ctrbench.plugins import Plugins, load_plugins
from ctrbench.provenance import environment
from ctrbench.registry import check_config_keys
from ctrbench.results import Predictions, RunResult
from ctrbench.spec import RunSpec, canonical_json
from ctrbench.stats import auc, bucket_metrics, logloss
from ctrbench.store import Store
from ctrbench.suite import Suite, expand
from ctrbench.trainer import NullReporter, Reporter, TrainConfig, Trainer, resolve_device

log = logging.getLogger(__name__)

# Keyword arguments the runner itself passes to CTR factories; not settable from a suite.
CTR_RESERVED = ("fields", "num_extra_fields")


@dataclass
class Session:
    """Long-lived state of one ``ctrbench`` invocation: plugins, store, device, loaded datasets."""

    plugins: Plugins
    store: Store
    device: torch.device
    threads: int
    reporter: Reporter = field(default_factory=NullReporter)
    cache_dir: Path = field(default_factory=cache_root)
    _datasets: dict[str, CTRData] = field(default_factory=dict)
    _env: dict[str, Any] | None = None

    @classmethod
    def create(cls, store_root: str | Path = "runs", device: str = "auto", threads: int | None = None,
               reporter: Reporter | None = None, plugins: Plugins | None = None,
               cache_dir: str | Path | None = None) -> Session:
        threads = threads or os.cpu_count() or 1
        torch.set_num_threads(threads)  # explicit, so a worker never oversubscribes the CPU
        return cls(plugins=plugins or load_plugins(), store=Store(store_root), device=resolve_device(device),
                   threads=threads, reporter=reporter or NullReporter(),
                   cache_dir=Path(cache_dir) if cache_dir else cache_root())

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


# -- validation against the registries ---------------------------------------------------------------

def validate_components(suite: Suite, specs: list[RunSpec], plugins: Plugins) -> None:
    """Every name exists and every config key is a real argument; errors name the suite file."""
    seen: set[str] = set()
    checks = (("dataset", "datasets", ()), ("method", "methods", ()), ("ctr", "ctr", CTR_RESERVED),
              ("plm", "plm", ()))
    for spec in specs:
        for attr, kind, reserved in checks:
            ref = getattr(spec, attr)
            if ref is None:
                continue
            sig = canonical_json([attr, ref.name, ref.config])
            if sig in seen:
                continue
            seen.add(sig)
            try:
                entry = plugins.registry(kind).get(ref.name)
                check_config_keys(entry.factory, ref.config, f"{kind} '{ref.name}'", reserved)
            except PluginError as exc:
                hint = plugins.failure_hint() if "unknown" in str(exc) else ""
                raise SuiteError(f"{suite.path}: {attr}: {exc}{hint}") from None
    if suite.executor.name not in plugins.registry("executors"):
        try:
            plugins.registry("executors").get(suite.executor.name)
        except PluginError as exc:
            raise SuiteError(f"{suite.path}: executor: {exc}") from None


def plan(suite: Suite, plugins: Plugins) -> list[RunSpec]:
    specs = expand(suite)
    validate_components(suite, specs, plugins)
    return specs


# -- one run ------------------------------------------------------------------------------------------

def _metrics(data: CTRData, preds: Predictions) -> dict[str, float]:
    out: dict[str, float] = {}
    for split, p in (("valid", preds.valid), ("test", preds.test)):
        y = np.asarray(data.y[data.splits[split]], dtype=np.float64)
        if len(p) != len(y):
            raise RunError(f"method returned {len(p)} {split} predictions for {len(y)} rows")
        if not np.all(np.isfinite(p)):
            raise RunError(f"method returned non-finite {split} predictions")
        out[f"{split}_auc"] = auc(y, p)
        out[f"{split}_logloss"] = logloss(y, p)
    out.update(preds.extra)
    return out


def _buckets(data: CTRData, p: np.ndarray, suite_buckets: Any) -> dict[str, dict[str, float]]:
    y = np.asarray(data.y[data.splits["test"]], dtype=np.float64)
    masks = longtail_masks(data, "test", suite_buckets.tail_fraction)
    masks.update({f"items_{k}": v for k, v in headtail_item_masks(data, "test", suite_buckets.head_fraction).items()})
    return bucket_metrics(y, p, masks)


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.buffer = io.StringIO()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.buffer.write(self.format(record) + "\n")


def run_one(spec: RunSpec, session: Session, suite: Suite) -> RunResult:
    """Run and store one spec. Failures of the run itself are stored as failed results, not raised;
    data errors (missing or corrupt files) are raised because every run of that dataset would fail."""
    store = session.store
    store.begin(spec)
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
        trainer = Trainer(TrainConfig.from_dict(spec.train), session.device, session.reporter,
                          run_name=f"{spec.config_label()} seed {spec.seed}", seed=spec.seed)
        method = session.plugins.registry("methods").get(spec.method.name).create(**spec.method.config)
        ctx = RunContext(spec, data, session.plugins, trainer, session.device, session.reporter,
                         session.store.root / "_stages")
        preds = method.run(ctx)
        result = RunResult(spec.run_id, "ok", _metrics(data, preds), _buckets(data, preds.test, suite.buckets),
                           preds.n_params, preds.train_seconds, preds.infer_seconds, preds.infer_ms_per_batch,
                           preds.epochs)
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
        "plugins": _plugin_origins(spec, session.plugins),
    }
    predictions = None
    if data is not None:
        provenance["dataset"] = {"name": data.name, "fingerprint": data.fingerprint,
                                 "splits": data.split_sizes(),
                                 "train_used": min(data.split_sizes()["train"],
                                                   spec.train.get("max_samples") or 10**18)}
        if preds is not None:
            predictions = {"valid_p": preds.valid, "test_p": preds.test,
                           "valid_y": np.asarray(data.y[data.splits["valid"]], dtype=np.float32),
                           "test_y": np.asarray(data.y[data.splits["test"]], dtype=np.float32)}
    store.finish(spec, result, provenance, predictions, capture.buffer.getvalue())
    session.plugins.notify_run_finished(spec, result)
    return result


def _plugin_origins(spec: RunSpec, plugins: Plugins) -> dict[str, dict[str, str]]:
    infos = {i.name: i for i in plugins.infos}
    out = {}
    for attr, kind in (("dataset", "datasets"), ("method", "methods"), ("ctr", "ctr"), ("plm", "plm")):
        ref = getattr(spec, attr)
        if ref is None or ref.name not in plugins.registry(kind):
            continue
        plugin = plugins.registry(kind).get(ref.name).plugin
        info = infos.get(plugin)
        out[attr] = {"name": ref.name, "plugin": plugin,
                     "distribution": f"{info.distribution} {info.version}" if info else "?"}
    return out


# -- a whole suite ------------------------------------------------------------------------------------

@dataclass
class SuiteOutcome:
    specs: list[RunSpec]
    skipped: list[RunSpec] = field(default_factory=list)
    results: list[RunResult] = field(default_factory=list)
    interrupted: bool = False

    @property
    def executed(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if not r.ok]


def run_suite(suite: Suite, session: Session, rerun: str = "never",
              on_result: Callable[[RunSpec, RunResult], None] | None = None) -> SuiteOutcome:
    """Run every spec of the suite that the store does not hold yet (see ``rerun``)."""
    specs = plan(suite, session.plugins)
    todo = [s for s in specs if session.store.needs_run(s, rerun)]
    outcome = SuiteOutcome(specs, skipped=[s for s in specs if s not in todo])
    executor = session.plugins.registry("executors").get(suite.executor.name).create(**suite.executor.config)
    by_id = {s.run_id: s for s in todo}
    def run_if_needed(spec: RunSpec) -> RunResult:
        # Re-checked right before running: another process working on the same store (a second
        # `ctrbench run`, another executor) may have finished this run since the plan was made.
        if rerun != "all" and not session.store.needs_run(spec, rerun):
            stored = session.store.load(spec.suite, spec.run_id)
            if stored is not None:
                return stored.result
        return run_one(spec, session, suite)

    try:
        for result in executor.execute(todo, run_if_needed):
            outcome.results.append(result)
            if on_result:
                on_result(by_id[result.run_id], result)
    except KeyboardInterrupt:
        outcome.interrupted = True
    return outcome


__all__ = ["Session", "SuiteOutcome", "plan", "run_one", "run_suite", "validate_components"]
