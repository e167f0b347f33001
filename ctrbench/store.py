"""The result store: ``<root>/<suite>/<run_id>/{spec.json, predictions.npz, provenance.json, log.txt,
result.json}``.

Every file is written to a temp file and moved into place with ``os.replace``, and ``result.json`` is
written last: a run directory without it is an interrupted run and is simply run again. Nothing is ever
deleted except the leftovers of such an interrupted run, so a crash or Ctrl-C never loses a finished result.

While a run is in progress its directory also holds ``running.json`` (host, pid, the id of the ``ctrbench
run`` invocation, start time), removed once ``result.json`` is in place. It is how a progress view sees which
runs have started on workers it cannot talk to, and, left behind by a killed worker, which machine ran it.
Several processes (the workers of one executor, or two invocations) can share one store: each run directory
is written by the one process running it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctrbench.atomic import atomic_directory
from ctrbench.errors import StoreError
from ctrbench.results import RunResult
from ctrbench.spec import RunSpec

RERUN_POLICIES = ("never", "failed", "all")
RUNNING = "running.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


@dataclass(frozen=True)
class StoredRun:
    spec: RunSpec
    result: RunResult
    path: Path

    def predictions(self) -> dict[str, np.ndarray]:
        with np.load(self.path / "predictions.npz") as f:
            return {k: f[k] for k in f.files}

    def provenance(self) -> dict[str, Any]:
        p = self.path / "provenance.json"
        return json.loads(p.read_text()) if p.exists() else {}


class Store:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def run_dir(self, suite: str, run_id: str) -> Path:
        return self.root / suite / run_id

    def status(self, spec: RunSpec) -> str:
        """"ok", "failed", "partial" (started, no result) or "missing"."""
        d = self.run_dir(spec.suite, spec.run_id)
        result = d / "result.json"
        if result.exists():
            return self._read_result(result).status
        return "partial" if d.exists() else "missing"

    def needs_run(self, spec: RunSpec, rerun: str = "never") -> bool:
        if rerun not in RERUN_POLICIES:
            raise StoreError(f"--rerun must be one of {', '.join(RERUN_POLICIES)}, got {rerun!r}")
        status = self.status(spec)
        if rerun == "all" or status in ("missing", "partial"):
            return True
        return rerun == "failed" and status == "failed"

    def begin(self, spec: RunSpec, attempt: dict[str, Any] | None = None) -> Path:
        """Start a run: clear leftovers of an interrupted attempt, write spec.json (and ``attempt`` as
        running.json: who runs it, for progress views and post-mortems)."""
        d = self.run_dir(spec.suite, spec.run_id)
        if d.exists() and not (d / "result.json").exists():
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_json(d / "spec.json", spec.to_dict())  # a rerun keeps the old result until finish()
        if attempt is not None:
            atomic_write_json(d / RUNNING, attempt)
        return d

    def adopt_identical(self, spec: RunSpec, same_scoring: dict[str, Any]) -> str | None:
        """Reuse an ok run with the same ``run_id`` (the same dataset, method, components, train block and seed)
        stored by another suite: copy it into this suite and return that suite's name (None if there is none).

        The copy is only taken when the source run was scored the same way (``same_scoring``, e.g. the suite's
        bucket definitions, is equal to the source's provenance["scoring"]), so the adopted metrics are the ones
        this suite would compute. Copied into a temporary folder and renamed, with result.json last as always.
        """
        if not self.root.exists():
            return None
        for src in sorted(self.root.glob(f"*/{spec.run_id}")):
            suite = src.parent.name
            if suite in (spec.suite, "_stages") or not (src / "result.json").exists():
                continue
            try:
                if not self._read_result(src / "result.json").ok:
                    continue
                provenance = json.loads((src / "provenance.json").read_text())
            except (OSError, ValueError, StoreError):
                continue
            if provenance.get("scoring") != same_scoring:
                continue
            with atomic_directory(self.run_dir(spec.suite, spec.run_id)) as tmp:
                for f in src.iterdir():
                    if f.is_file() and f.name not in ("result.json", RUNNING):
                        shutil.copy2(f, tmp / f.name)
                atomic_write_json(tmp / "spec.json", spec.to_dict())
                atomic_write_json(tmp / "provenance.json", {**provenance, "reused_from": f"{suite}/{spec.run_id}"})
                shutil.copy2(src / "result.json", tmp / "result.json")
            return suite
        return None

    def attempt(self, spec: RunSpec) -> dict[str, Any] | None:
        """The running.json of a run in progress (or of one whose worker died), else None."""
        try:
            return json.loads((self.run_dir(spec.suite, spec.run_id) / RUNNING).read_text())
        except (OSError, ValueError):  # absent, or removed while we read it
            return None

    def finish(self, spec: RunSpec, result: RunResult, provenance: dict[str, Any],
               predictions: dict[str, np.ndarray] | None = None, log_text: str = "") -> Path:
        d = self.run_dir(spec.suite, spec.run_id)
        d.mkdir(parents=True, exist_ok=True)
        # A rerun replaces the old result only now that the new one exists; dropping result.json first
        # means a crash in the next few writes leaves a partial run, never an old result beside new files.
        (d / "result.json").unlink(missing_ok=True)
        if predictions is not None:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".predictions.", suffix=".npz")
            os.close(fd)
            np.savez_compressed(tmp, **predictions)
            os.replace(tmp, d / "predictions.npz")
        atomic_write_json(d / "provenance.json", provenance)
        if log_text:
            atomic_write_bytes(d / "log.txt", log_text.encode())
        atomic_write_json(d / "result.json", result.to_dict())  # last: marks the run complete
        (d / RUNNING).unlink(missing_ok=True)
        return d

    def _read_result(self, path: Path) -> RunResult:
        try:
            return RunResult.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise StoreError(f"{path}: unreadable result file ({exc}); delete it to rerun that run") from None

    def load(self, suite: str, run_id: str) -> StoredRun | None:
        d = self.run_dir(suite, run_id)
        if not (d / "result.json").exists():
            return None
        spec = RunSpec.from_dict(json.loads((d / "spec.json").read_text()))
        return StoredRun(spec, self._read_result(d / "result.json"), d)

    def find(self, run_id: str) -> StoredRun | None:
        """Look a run up by id (or unique prefix) in any suite."""
        if not self.root.exists():
            return None
        hits = [d for d in self.root.glob(f"*/{run_id}*") if (d / "result.json").exists()]
        if len(hits) > 1:
            raise StoreError(f"run id prefix '{run_id}' is ambiguous: {', '.join(h.name for h in hits[:5])}")
        return self.load(hits[0].parent.name, hits[0].name) if hits else None

    def runs(self, suite: str) -> Iterator[StoredRun]:
        base = self.root / suite
        if not base.exists():
            return
        for d in sorted(base.iterdir()):
            if d.is_dir() and (d / "result.json").exists():
                run = self.load(suite, d.name)
                if run is not None:
                    yield run

    def collect(self, specs: list[RunSpec]) -> list[StoredRun]:
        """The stored runs of these specs (labels taken from the current suite, not the stored copy)."""
        out = []
        for spec in specs:
            run = self.load(spec.suite, spec.run_id)
            if run is not None:
                out.append(StoredRun(spec, run.result, run.path))
        return out
