"""The result store: ``<root>/<suite>/<run_id>/{spec.json, predictions.npz, provenance.json, log.txt,
result.json}``.

Guarantees (docs/architecture.md, "The store", says how each is tested):

- **One writer per run.** A run is computed only under its claim, ``<root>/.ctrbench/claims/<suite>/<run_id>.json``
  (`ctrbench.claims`: created exclusively, names host, pid and start time; stale once its holder is provably
  gone). A process that meets a live claim skips the run and comes back for it; `Store.attempt` shows who
  holds it.
- **Atomic replace.** A run is written into its own work folder, ``<root>/.ctrbench/work/<suite>/<run_id>.<token>.new``,
  ``result.json`` last, and swapped in with renames (the old folder renamed away, the new one renamed in, the
  old one deleted last). Until the swap the old result, if any, is untouched and readable; a crash or a full
  disk before it leaves the old result as it was. A first run also writes ``spec.json`` and ``running.json``
  (who runs it) into ``<run_id>/`` when it starts: a folder without ``result.json`` is an interrupted run
  and is simply run again.
- **Nothing a process did not create is deleted by it**, except: the work folders of a claim proven stale
  (a killed process's), and the old version of a run it replaced under its claim when that folder holds only
  store files. Anything else in the way is moved to ``<root>/<suite>/_quarantine/``.
- **Readers never crash on a broken run**: `load`, `runs`, `collect`, `find` and `status` raise a one-line
  `StoreError` naming the folder and pointing to ``ctrbench store check --fix``, which lists partial,
  orphaned, unreadable and inconsistent entries (`Store.check`) and moves them to ``_quarantine`` (`Store.fix`),
  never deleting anything, so the next run computes them again.
- Files and folders get the user's umask (0644/0755 by default).
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import shutil
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ctrbench import claims
from ctrbench.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    make_dirs,
    make_temp_dir,
    replace_directory,
    stage_lock_path,
    write_new_file,
    writing,
)
from ctrbench.errors import StoreError
from ctrbench.results import RunResult
from ctrbench.spec import RunSpec

RERUN_POLICIES = ("never", "failed", "all")
RUNNING = "running.json"
STORE_FILES = ("spec.json", "predictions.npz", "provenance.json", "log.txt", "result.json", RUNNING)
META = ".ctrbench"  # <root>/.ctrbench/{claims,work}/<suite>/: the store's own bookkeeping
QUARANTINE = "_quarantine"
STAGES = "_stages"  # <root>/_stages/<name>-<hash>/: pretraining artifacts shared by runs (ctrbench/context.py)
PROBLEM_KINDS = ("partial", "orphaned", "unreadable", "inconsistent")
TEMP_GRACE_SECONDS = 60.0  # a hidden temp file younger than this may belong to a write in progress


def is_run_name(name: str) -> bool:
    """Names under a suite folder (or suite folders under the root) that are runs (suites), not bookkeeping."""
    return not name.startswith(("_", "."))


def _store_made(path: Path) -> bool:
    """A folder holding nothing but store files (and temp files of interrupted writes)."""
    try:
        return all(p.name in STORE_FILES or (p.name.startswith(".") and p.is_file()) for p in path.iterdir())
    except OSError:
        return False


class ClaimLost(StoreError):
    """This process's claim on a run was broken by another process (which judged it stale); nothing of
    this attempt is stored."""


@dataclass(frozen=True)
class StoredRun:
    spec: RunSpec
    result: RunResult
    path: Path

    def _broken(self, what: str) -> StoreError:
        return StoreError(f"{self.path}: {what}; {_hint(self.path.parent.parent)}")

    def predictions(self) -> dict[str, np.ndarray]:
        p = self.path / "predictions.npz"
        try:
            with np.load(p) as f:
                return {k: f[k] for k in f.files}
        except FileNotFoundError:
            raise self._broken("no predictions.npz") from None
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise self._broken(f"unreadable predictions.npz ({type(exc).__name__}: {exc})") from None

    def provenance(self) -> dict[str, Any]:
        p = self.path / "provenance.json"
        if not p.exists():
            return {}
        try:
            value = json.loads(p.read_bytes())
        except (OSError, ValueError) as exc:
            raise self._broken(f"unreadable provenance.json ({type(exc).__name__}: {exc})") from None
        if not isinstance(value, dict):
            raise self._broken(f"provenance.json holds a {type(value).__name__}, not an object")
        return value


@dataclass(frozen=True)
class Problem:
    """One finding of `Store.check`: ``kind`` is partial | orphaned | unreadable | inconsistent."""

    kind: str
    path: Path
    detail: str
    suite: str
    run_id: str | None = None

    def line(self) -> str:
        return f"{self.kind:<12} {self.path}: {self.detail}"


def _hint(root: Path) -> str:
    return f"run `ctrbench store check --store {root} --fix` to move it aside (the next run computes it again)"


class Store:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._work: dict[tuple[str, str], Path] = {}
        self._claims: dict[tuple[str, str], claims.Claim] = {}
        self._auto: set[tuple[str, str]] = set()  # claims `begin`/`finish` took themselves (released by `finish`)

    # -- paths -------------------------------------------------------------------------------------------

    def run_dir(self, suite: str, run_id: str) -> Path:
        return self.root / suite / run_id

    def claim_path(self, suite: str, run_id: str) -> Path:
        return self.root / META / "claims" / suite / f"{run_id}.json"

    def work_area(self, suite: str) -> Path:
        return self.root / META / "work" / suite

    def quarantine_dir(self, suite: str) -> Path:
        return self.root / suite / QUARANTINE

    def suites(self) -> list[str]:
        """Suite folders of the store (and suites with leftovers in the store's bookkeeping)."""
        names: set[str] = set()
        for base in (self.root, self.root / META / "work", self.root / META / "claims"):
            if base.is_dir():
                names.update(p.name for p in base.iterdir() if p.is_dir() and is_run_name(p.name))
        return sorted(names)

    def _broken(self, d: Path, what: str) -> StoreError:
        return StoreError(f"{d}: {what}; {_hint(self.root)}")

    # -- claims: one writer per run ------------------------------------------------------------------------

    def claim(self, spec: RunSpec, info: dict[str, Any] | None = None) -> claims.Claim | None:
        """Claim a run for this process (None when a live process holds it: `claimant` says which). Taking
        over a stale claim also cleans what its holder left in the work area."""
        return self._claim(spec.suite, spec.run_id, info or {})

    def _claim(self, suite: str, run_id: str, info: dict[str, Any], cleanup: bool = True) -> claims.Claim | None:
        key = (suite, run_id)
        if key in self._claims:
            return self._claims[key]
        got = claims.try_claim(self.claim_path(suite, run_id), info)
        if isinstance(got, dict):
            return None
        self._claims[key] = got
        if cleanup:
            self._clean_leftovers(suite, run_id, got.token)
        return got

    def release(self, spec: RunSpec) -> None:
        """Give the run's claim back, dropping the work folder of an attempt that was not finished."""
        self._release(spec.suite, spec.run_id)

    def _release(self, suite: str, run_id: str) -> None:
        key = (suite, run_id)
        self._auto.discard(key)
        work = self._work.pop(key, None)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        claim = self._claims.pop(key, None)
        if claim is not None:
            claim.release()

    def holds(self, spec: RunSpec) -> bool:
        return (spec.suite, spec.run_id) in self._claims

    def claimant(self, spec: RunSpec) -> dict[str, Any] | None:
        """Who holds a live claim on the run (this process included), else None."""
        info = claims.live_holder(self.claim_path(spec.suite, spec.run_id))
        return None if info is None else _public(info)

    def attempt(self, spec: RunSpec) -> dict[str, Any] | None:
        """Who runs or last ran a run not finished (live, or a killed worker: compare ``invocation``/``pid``):
        the ``running.json`` of a first run, else the run's claim (a rerun), else None."""
        try:
            value = json.loads((self.run_dir(spec.suite, spec.run_id) / RUNNING).read_text())
            if isinstance(value, dict):
                return value
        except (OSError, ValueError):  # absent, or removed while we read it
            pass
        info = claims.read_claim(self.claim_path(spec.suite, spec.run_id))
        if info is not None and not info.get("unreadable"):
            return _public(info)
        return None

    def _ensure_claim(self, spec: RunSpec, info: dict[str, Any] | None) -> None:
        """`begin`/`finish` called without the run's claim (library use): take it for them, or refuse."""
        key = (spec.suite, spec.run_id)
        if key in self._claims:
            return
        if self.claim(spec, info or {}) is None:
            raise StoreError(f"run {spec.run_id} is being computed by {claims.where(self.claimant(spec))}; "
                             "not writing it from here too")
        self._auto.add(key)

    def _clean_leftovers(self, suite: str, run_id: str, keep: str) -> None:
        """Under the run's claim: what earlier holders (killed) left in the work area. An interrupted swap is
        undone (the old folder renamed back); work folders are deleted."""
        area = self.work_area(suite)
        try:
            entries = sorted(area.glob(f"{run_id}.*"), key=lambda p: not p.name.endswith(".old"))
        except OSError:
            return
        d = self.run_dir(suite, run_id)
        for p in entries:
            parts = p.name.split(".")
            if len(parts) < 3 or parts[1] == keep:
                continue
            if p.name.endswith(".old"):
                if not os.path.lexists(d):
                    with writing(d):
                        os.rename(p, d)  # killed between the two renames of a swap: the old run comes back
                else:
                    self._dispose(p, suite, run_id)
            else:
                shutil.rmtree(p, ignore_errors=True)

    def sweep(self, suite: str) -> int:
        """Clean the work area of ``suite``: leftovers of killed processes whose runs nobody holds now.
        Returns how many runs were cleaned. (Called at the start of ``ctrbench run``.)"""
        area = self.work_area(suite)
        if not area.is_dir():
            return 0
        run_ids = {p.name.split(".")[0] for p in area.iterdir() if p.name.count(".") >= 2}
        cleaned = 0
        for run_id in sorted(run_ids):
            if (suite, run_id) in self._claims or claims.live_holder(self.claim_path(suite, run_id)):
                continue
            if self._claim(suite, run_id, {"sweeping": True}) is not None:
                self._release(suite, run_id)
                cleaned += 1
        return cleaned

    # -- status --------------------------------------------------------------------------------------------

    def _swapping(self, suite: str, run_id: str) -> bool:
        """Whether a swap of this run is under way (its old folder renamed away, the new one not yet in)."""
        try:
            return any(self.work_area(suite).glob(f"{run_id}.*.old"))
        except OSError:
            return False

    def _settle(self, suite: str, run_id: str) -> None:
        """Wait (briefly) for a swap in progress to end, so a reader sees the old or the new run, not none."""
        deadline = time.monotonic() + 2.0
        while (not self.run_dir(suite, run_id).exists() and self._swapping(suite, run_id)
               and time.monotonic() < deadline):
            time.sleep(0.01)

    def status(self, spec: RunSpec) -> str:
        """"ok", "failed", "partial" (started, no result) or "missing"; a `StoreError` for a broken run (its
        result, spec or provenance unreadable or missing, or an ok result without predictions)."""
        d = self.run_dir(spec.suite, spec.run_id)
        for last in (False, True):
            try:
                if (d / "result.json").exists():
                    result = self._read_result(d / "result.json")
                    self._read_spec(d)
                    if not (d / "provenance.json").exists():
                        raise self._broken(d, "result.json without provenance.json")
                    if result.ok and not (d / "predictions.npz").exists():
                        raise self._broken(d, "an ok result without predictions.npz")
                    return result.status
                if d.exists():
                    return "partial"
                if not self._swapping(spec.suite, spec.run_id):
                    return "missing"
            except FileNotFoundError:  # swapped while we read it
                pass
            except StoreError:
                if last:
                    raise
            time.sleep(0.05)  # a swap may be under way: look again once
        return "missing"

    def needs_run(self, spec: RunSpec, rerun: str = "never") -> bool:
        if rerun not in RERUN_POLICIES:
            raise StoreError(f"--rerun must be one of {', '.join(RERUN_POLICIES)}, got {rerun!r}")
        status = self.status(spec)
        if rerun == "all" or status in ("missing", "partial"):
            return True
        return rerun == "failed" and status == "failed"

    def result_stamp(self, spec: RunSpec) -> tuple[int, int, int] | None:
        """Identity of the stored result file (inode, mtime, size): changes when a run is stored again."""
        try:
            st = (self.run_dir(spec.suite, spec.run_id) / "result.json").stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    # -- writing a run -------------------------------------------------------------------------------------

    def _new_work(self, spec: RunSpec) -> Path:
        key = (spec.suite, spec.run_id)
        stale = self._work.pop(key, None)
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
        claim = self._claims.get(key)
        token = claim.token if claim is not None else secrets.token_hex(8)
        area = self.work_area(spec.suite)
        make_dirs(area)
        work = area / f"{spec.run_id}.{token}.new"
        if work.exists():
            shutil.rmtree(work)
        with writing(work):
            os.mkdir(work)
        self._work[key] = work
        write_new_file(work / "spec.json", _json(spec.to_dict()))
        return work

    def begin(self, spec: RunSpec, attempt: dict[str, Any] | None = None) -> Path:
        """Start a run: a fresh work folder for it; for a run not stored yet, also ``spec.json`` and
        ``attempt`` as ``running.json`` (who runs it) in its folder. Returns the run's folder. A stored
        result stays untouched until `finish` swaps the new one in."""
        self._ensure_claim(spec, attempt)
        self._new_work(spec)
        d = self.run_dir(spec.suite, spec.run_id)
        if not (d / "result.json").exists():
            make_dirs(d)
            atomic_write_json(d / "spec.json", spec.to_dict())
            if attempt is not None:
                atomic_write_json(d / RUNNING, attempt)
        return d

    def finish(self, spec: RunSpec, result: RunResult, provenance: dict[str, Any],
               predictions: dict[str, np.ndarray] | None = None, log_text: str = "") -> Path:
        """Write the run's files into its work folder, ``result.json`` last, and swap the folder in, under the
        run's claim (taken here if `begin` did not; a claim broken meanwhile raises `ClaimLost`)."""
        key = (spec.suite, spec.run_id)
        self._ensure_claim(spec, None)
        work = self._work.get(key)
        if work is None or not work.is_dir():
            work = self._new_work(spec)
        try:
            if predictions is not None:
                buf = io.BytesIO()
                np.savez_compressed(buf, **predictions)
                write_new_file(work / "predictions.npz", buf.getvalue())
            write_new_file(work / "provenance.json", _json(provenance))
            if log_text:
                write_new_file(work / "log.txt", log_text.encode())
            write_new_file(work / "result.json", _json(result.to_dict()))  # last: marks the run complete
            self._publish(spec, work)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        finally:
            self._work.pop(key, None)
            if key in self._auto:
                self._release(spec.suite, spec.run_id)
        return self.run_dir(spec.suite, spec.run_id)

    def _publish(self, spec: RunSpec, work: Path) -> None:
        """Swap a complete work folder in as the run's folder."""
        key = (spec.suite, spec.run_id)
        claim = self._claims.get(key)
        if claim is not None and not claim.held():
            holder = claims.read_claim(claim.path)
            raise ClaimLost(f"run {spec.run_id}: another process ({claims.where(holder)}) took over this "
                            "process's claim on it; this attempt is not stored")
        d = self.run_dir(spec.suite, spec.run_id)
        make_dirs(d.parent)
        token = work.name.split(".")[1]
        old = self.work_area(spec.suite) / f"{spec.run_id}.{token}.old"
        dispose = lambda p: self._dispose(p, spec.suite, spec.run_id)  # noqa: E731
        try:
            replace_directory(work, d, old=old, dispose=dispose)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # the suite folder is on another file system than the store root: go through a sibling copy
            sibling = make_temp_dir(d.parent, f".{spec.run_id}.")
            try:
                shutil.copytree(work, sibling, dirs_exist_ok=True)
                replace_directory(sibling, d, dispose=dispose)
            finally:
                shutil.rmtree(sibling, ignore_errors=True)
                shutil.rmtree(work, ignore_errors=True)

    def _dispose(self, old: Path, suite: str, run_id: str) -> None:
        """The folder a swap replaced: deleted when it holds only store files, else quarantined."""
        if _store_made(old):
            shutil.rmtree(old, ignore_errors=True)
        else:
            self._quarantine(old, suite, run_id)

    def _quarantine(self, path: Path, suite: str, name: str) -> Path:
        q = self.quarantine_dir(suite)
        make_dirs(q)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        dest = q / f"{name}.{stamp}.{secrets.token_hex(2)}"
        with writing(dest):
            os.rename(path, dest)
        return dest

    def identical_source(self, spec: RunSpec, same_scoring: dict[str, Any]) -> tuple[str, Path] | None:
        """The first ok run with ``spec``'s ``run_id`` that another suite stored and scored the same way
        (``same_scoring`` equal to its provenance["scoring"]), as (suite, folder); None if there is none.
        Reads only: ``validate`` and ``run --dry-run`` use it to say which runs would be reused."""
        if not self.root.exists():
            return None
        for src in sorted(self.root.glob(f"*/{spec.run_id}")):
            suite = src.parent.name
            if suite == spec.suite or not is_run_name(suite) or not (src / "result.json").exists():
                continue
            try:
                if not self._read_result(src / "result.json").ok:
                    continue
                provenance = json.loads((src / "provenance.json").read_text())
            except (OSError, ValueError, StoreError):
                continue
            if isinstance(provenance, dict) and provenance.get("scoring") == same_scoring:
                return suite, src
        return None

    def adopt_identical(self, spec: RunSpec, same_scoring: dict[str, Any]) -> str | None:
        """Reuse an ok run with the same ``run_id`` (the same dataset, method, components, train block and seed)
        stored by another suite: copy it into this suite and return that suite's name (None if there is none).

        The copy is only taken when the source run was scored the same way (``same_scoring``, e.g. the suite's
        bucket definitions, is equal to the source's provenance["scoring"]), so the adopted metrics are the ones
        this suite would compute. Copied under the run's claim into a work folder and swapped in, like a run.
        """
        found = self.identical_source(spec, same_scoring)
        if found is None:
            return None
        suite, src = found
        try:
            provenance = json.loads((src / "provenance.json").read_text())
        except (OSError, ValueError):
            return None  # replaced or removed since it was found
        held = self.holds(spec)
        if not held and self.claim(spec, {"adopting_from": suite}) is None:
            return None  # another process is computing (or adopting) it
        try:
            if self.status(spec) == "ok":
                return None  # stored meanwhile
            work = self._new_work(spec)
            try:
                for f in src.iterdir():
                    if f.name in ("predictions.npz", "log.txt"):
                        with writing(work / f.name):
                            shutil.copyfile(f, work / f.name)
                write_new_file(work / "provenance.json",
                               _json({**provenance, "reused_from": f"{suite}/{spec.run_id}"}))
                write_new_file(work / "result.json", (src / "result.json").read_bytes())
                self._publish(spec, work)
            except FileNotFoundError:
                return None  # the source was replaced or moved while we copied it
            finally:
                shutil.rmtree(work, ignore_errors=True)  # gone after the swap; the leftovers otherwise
                self._work.pop((spec.suite, spec.run_id), None)
        finally:
            if not held:
                self.release(spec)
        return suite

    # -- reading -------------------------------------------------------------------------------------------

    def _read_result(self, path: Path) -> RunResult:
        try:
            raw = json.loads(path.read_bytes())
            if not isinstance(raw, dict):
                raise TypeError(f"a JSON {type(raw).__name__}, not an object")
            result = RunResult.from_dict(raw)
            if result.status not in ("ok", "failed") or not isinstance(result.metrics, dict):
                raise ValueError(f"status {result.status!r}")
            return result
        except FileNotFoundError:
            raise
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise self._broken(path.parent, f"unreadable result.json ({exc})") from None

    def _read_spec(self, d: Path) -> RunSpec:
        p = d / "spec.json"
        try:
            raw = json.loads(p.read_bytes())
        except FileNotFoundError:
            raise self._broken(d, "result.json without spec.json") from None
        except (OSError, ValueError) as exc:
            raise self._broken(d, f"unreadable spec.json ({exc})") from None
        try:
            if not isinstance(raw, dict):
                raise TypeError(f"a JSON {type(raw).__name__}, not an object")
            spec = RunSpec.from_dict(raw)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise self._broken(d, f"unreadable spec.json ({type(exc).__name__}: {exc})") from None
        if raw.get("run_id", d.name) != d.name:
            raise self._broken(d, f"spec.json describes run {raw.get('run_id')}")
        return spec

    def _load_once(self, suite: str, run_id: str) -> StoredRun | None:
        d = self.run_dir(suite, run_id)
        try:
            result = self._read_result(d / "result.json")
        except FileNotFoundError:
            return None
        spec = self._read_spec(d)
        if not (d / "provenance.json").exists():
            raise self._broken(d, "result.json without provenance.json")
        return StoredRun(spec, result, d)

    def load(self, suite: str, run_id: str) -> StoredRun | None:
        """The complete run, None if there is none (not run, or interrupted); a `StoreError` if it is
        broken. A swap in progress (another process storing the run again) is waited out."""
        for last in (False, True):
            self._settle(suite, run_id)
            try:
                return self._load_once(suite, run_id)
            except StoreError:
                if last:
                    raise
                time.sleep(0.05)  # the folder may have been swapped while we read it: look again once
        return None  # pragma: no cover

    def find(self, run_id: str) -> StoredRun | None:
        """Look a run up by id (or unique prefix) in any suite."""
        if not self.root.exists():
            return None
        hits = [d for d in self.root.glob(f"*/{run_id}*")
                if is_run_name(d.parent.name) and is_run_name(d.name) and (d / "result.json").exists()]
        if len(hits) > 1:
            raise StoreError(f"run id prefix '{run_id}' is ambiguous: {', '.join(h.name for h in hits[:5])}")
        return self.load(hits[0].parent.name, hits[0].name) if hits else None

    def runs(self, suite: str) -> Iterator[StoredRun]:
        base = self.root / suite
        if not base.exists():
            return
        for d in sorted(base.iterdir()):
            if is_run_name(d.name) and d.is_dir() and (d / "result.json").exists():
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

    def verify(self, spec: RunSpec) -> str:
        """`status`, reading every file of a stored run (predictions and provenance included): a
        `StoreError` naming the folder if any of them is broken."""
        status = self.status(spec)
        if status in ("ok", "failed"):
            d = self.run_dir(spec.suite, spec.run_id)
            problem = self.inspect(spec.suite, d)
            if problem is not None and problem.kind != "partial":
                raise self._broken(d, problem.detail)
        return status

    # -- store check -----------------------------------------------------------------------------------------

    def inspect(self, suite: str, d: Path) -> Problem | None:
        """What is wrong with run folder ``d`` of ``suite`` (None if it is a complete, consistent run)."""
        run_id = d.name

        def problem(kind: str, detail: str) -> Problem:
            return Problem(kind, d, detail, suite, run_id)

        if not os.path.lexists(d):
            return None  # gone meanwhile (swapped, or moved by another check)
        if not d.is_dir():
            return problem("orphaned", "not a run folder")
        try:
            files = {p.name for p in d.iterdir()}
        except OSError as exc:
            return problem("unreadable", f"cannot list it ({exc.strerror or exc})")
        if "result.json" not in files:
            return problem("partial", "no result.json (an interrupted run)")
        try:
            result = self._read_result(d / "result.json")
        except (StoreError, OSError) as exc:
            return problem("unreadable", str(exc).split("; run `")[0].removeprefix(f"{d}: "))
        if result.run_id != run_id:
            return problem("inconsistent", f"result.json is the result of run {result.run_id}")
        if "spec.json" not in files:
            return problem("inconsistent", "result.json without spec.json")
        try:
            raw = json.loads((d / "spec.json").read_bytes())
            spec = RunSpec.from_dict(raw)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            return problem("unreadable", f"unreadable spec.json ({type(exc).__name__}: {exc})")
        if raw.get("run_id", run_id) != run_id or spec.run_id != run_id:
            return problem("inconsistent", f"spec.json describes run {spec.run_id}, not {run_id}")
        if spec.suite != suite:
            return problem("inconsistent", f"spec.json belongs to suite '{spec.suite}'")
        if "provenance.json" not in files:
            return problem("inconsistent", "result.json without provenance.json")
        try:
            prov = json.loads((d / "provenance.json").read_bytes())
            if not isinstance(prov, dict):
                raise ValueError(f"a JSON {type(prov).__name__}, not an object")
        except (OSError, ValueError) as exc:
            return problem("unreadable", f"unreadable provenance.json ({exc})")
        if "predictions.npz" in files:
            try:
                with zipfile.ZipFile(d / "predictions.npz") as z:
                    if not z.namelist():
                        raise zipfile.BadZipFile("no arrays")
            except (OSError, zipfile.BadZipFile) as exc:
                return problem("unreadable", f"unreadable predictions.npz ({exc})")
        elif result.ok:
            return problem("inconsistent", "an ok result without predictions.npz")
        return None

    def check(self, suites: list[str] | None = None) -> list[Problem]:
        """Every run folder that is partial (and not being computed), unreadable or inconsistent with its
        spec, and every leftover (work folders and claims of killed processes, stray temp files)."""
        found: list[Problem] = []
        for suite in suites if suites is not None else self.suites():
            base = self.root / suite
            if base.is_dir():
                for d in sorted(base.iterdir()):
                    if d.name == QUARANTINE:
                        continue
                    if d.name.startswith((".", "_")):
                        if _age(d) > TEMP_GRACE_SECONDS:
                            found.append(Problem("orphaned", d, "temporary file of an interrupted write", suite))
                        continue
                    problem = self.inspect(suite, d)
                    if problem is None:
                        continue
                    holder = claims.live_holder(self.claim_path(suite, d.name))
                    if holder is not None:
                        if problem.kind == "partial":
                            continue  # being computed right now
                        problem = Problem(problem.kind, d, f"{problem.detail} (being replaced by "
                                          f"{claims.where(holder)})", suite, d.name)
                    found.append(problem)
            area = self.work_area(suite)
            if area.is_dir():
                for p in sorted(area.iterdir()):
                    run_id, _, rest = p.name.partition(".")
                    token = rest.split(".")[0]
                    info = claims.read_claim(self.claim_path(suite, run_id))
                    if info is not None and info.get("token") == token and not claims.is_stale(info):
                        continue  # in use
                    found.append(Problem("orphaned", p, "work folder left by an interrupted run", suite, run_id))
            cdir = self.root / META / "claims" / suite
            if cdir.is_dir():
                for p in sorted(cdir.iterdir()):
                    if p.suffix == ".json" and not p.name.startswith("."):
                        info = claims.read_claim(p)
                        if info is not None and claims.is_stale(info):
                            found.append(Problem("orphaned", p, f"stale claim of {claims.where(info)} (that process "
                                                 "is gone)", suite, p.stem))
                    elif (p.name.startswith(".") or p.name.endswith(".breaking")) and _age(p) > TEMP_GRACE_SECONDS:
                        found.append(Problem("orphaned", p, "temporary file of an interrupted claim", suite))
        if suites is None:
            found += self._stage_leftovers()
        return found

    def _stage_leftovers(self) -> list[Problem]:
        """Temp folders ``_stages/.<key>.<token>`` of stage computations killed midway. A live computation holds
        the stage's file lock (``.<key>.lock``) for as long as its temp folder exists, so a temp folder whose lock
        can be taken now belongs to nobody. The next computation of that stage would remove it; a stage nobody
        asks for again would keep it forever, hence the check."""
        from filelock import FileLock, Timeout

        root = self.root / STAGES
        found: list[Problem] = []
        if not root.is_dir():
            return found
        for d in sorted(root.iterdir()):
            key = _stage_key(d)
            if key is None or not d.is_dir():
                continue
            lock = FileLock(stage_lock_path(root, key))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue  # being computed right now
            except (OSError, NotImplementedError):  # no file locks here: fall back on age
                if _age(d) <= TEMP_GRACE_SECONDS:
                    continue
            else:
                lock.release()
            found.append(Problem("orphaned", d, "temp folder of an interrupted stage computation", STAGES))
        return found

    def fix(self, problems: list[Problem]) -> list[tuple[Problem, Path | None, str]]:
        """Move what `check` found out of the way: run folders and leftovers to ``<suite>/_quarantine/``
        (never deleted), stale claims broken. Returns (problem, where it went, note) for each."""
        done: list[tuple[Problem, Path | None, str]] = []
        for p in problems:
            if not os.path.lexists(p.path):
                done.append((p, None, "gone meanwhile"))
                continue
            if p.path.suffix == ".json" and p.path.parent == self.root / META / "claims" / p.suite:
                info = claims.read_claim(p.path)
                if info is not None and claims.is_stale(info) and claims._break(p.path, info):
                    done.append((p, None, "stale claim removed"))
                else:
                    done.append((p, None, "left alone: its holder is alive"))
                continue
            if p.suite == STAGES:
                done.append(self._fix_stage_leftover(p))
                continue
            if p.run_id is None or not p.run_id.isalnum():
                done.append((p, self._quarantine(p.path, p.suite, p.path.name.lstrip(".")), "moved"))
                continue
            claim = self._claim(p.suite, p.run_id, {"store_check": True}, cleanup=False)
            if claim is None:
                holder = claims.live_holder(self.claim_path(p.suite, p.run_id))
                done.append((p, None, f"left alone: being computed by {claims.where(holder)}"))
                continue
            try:
                still = (self.inspect(p.suite, p.path) is not None) if p.path.parent == self.root / p.suite else True
                if still and os.path.lexists(p.path):
                    done.append((p, self._quarantine(p.path, p.suite, p.path.name), "moved"))
                else:
                    done.append((p, None, "fine now"))
            finally:
                self._release(p.suite, p.run_id)
        return done

    def _fix_stage_leftover(self, p: Problem) -> tuple[Problem, Path | None, str]:
        """Move a stage's temp folder aside under the stage's lock, so no computation starts meanwhile."""
        from filelock import FileLock, Timeout

        lock = FileLock(stage_lock_path(p.path.parent, _stage_key(p.path) or ""))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return p, None, "left alone: the stage is being computed"
        except (OSError, NotImplementedError):
            lock = None
        try:
            if not os.path.lexists(p.path):
                return p, None, "gone meanwhile"
            return p, self._quarantine(p.path, STAGES, p.path.name.lstrip(".")), "moved"
        finally:
            if lock is not None:
                lock.release()


def _stage_key(temp: Path) -> str | None:
    """``<key>`` of a stage's temp folder ``.<key>.<token>`` (None for anything else in ``_stages``)."""
    key, dot, _ = temp.name[1:].rpartition(".")
    return key if temp.name.startswith(".") and dot and key and temp.suffix != ".lock" else None


def _age(path: Path) -> float:
    try:
        return time.time() - path.lstat().st_mtime
    except OSError:
        return 0.0


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def _public(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if not k.startswith("_")}


__all__ = ["META", "PROBLEM_KINDS", "QUARANTINE", "RERUN_POLICIES", "RUNNING", "ClaimLost", "Problem", "Store",
           "StoredRun", "atomic_write_bytes", "atomic_write_json"]
