"""Store layout, atomic completion and replace, resume and rerun policies, claims, corrupt runs, store check."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import ctrbench.atomic as atomic
from ctrbench import claims
from ctrbench.errors import StoreError, WriteError
from ctrbench.results import RunResult
from ctrbench.spec import ComponentRef, RunSpec
from ctrbench.store import Store


def spec(seed: int = 1) -> RunSpec:
    return RunSpec("s", ComponentRef("synthetic"), ComponentRef("ctr"), ComponentRef("dnn"), None, {"epochs": 1},
                   seed, {"ctr": "dnn", "seed": str(seed)})


def store_ok(store: Store, s: RunSpec, auc: float = 0.7, log: str = "log line\n") -> None:
    store.begin(s)
    store.finish(s, RunResult(s.run_id, "ok", {"test_auc": auc}), {"seed": s.seed},
                 {"test_p": np.array([0.1, 0.9])}, log)


def snapshot(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def leftovers(store: Store) -> list[str]:
    """What the store's bookkeeping holds besides empty folders: work folders and claim files."""
    meta = store.root / ".ctrbench"
    found = meta.rglob("*") if meta.exists() else []
    return sorted(str(p.relative_to(meta)) for p in found if p.is_file() or p.name.endswith((".new", ".old")))


def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_layout_and_roundtrip(tmp_path):
    store = Store(tmp_path)
    s = spec()
    assert store.status(s) == "missing"
    d = store.begin(s, {"host": "h", "pid": 1})
    assert store.status(s) == "partial" and {p.name for p in d.iterdir()} == {"spec.json", "running.json"}
    store.finish(s, RunResult(s.run_id, "ok", {"test_auc": 0.7}), {"seed": 1},
                 {"test_p": np.array([0.1, 0.9])}, "log line\n")
    assert sorted(p.name for p in d.iterdir()) == ["log.txt", "predictions.npz", "provenance.json", "result.json",
                                                   "spec.json"]
    run = store.load("s", s.run_id)
    assert run.result.metrics == {"test_auc": 0.7} and run.spec == s and run.provenance() == {"seed": 1}
    np.testing.assert_array_equal(run.predictions()["test_p"], [0.1, 0.9])
    assert store.find(s.run_id[:6]).spec.run_id == s.run_id
    assert leftovers(store) == []  # the work folder was swapped in, nothing is left behind
    assert store.check() == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_and_folders_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        store = Store(tmp_path / "store")
        store_ok(store, spec())
        atomic.atomic_write_json(tmp_path / "board" / "x.json", {})
    finally:
        os.umask(old)
    d = store.run_dir("s", spec().run_id)
    files = [*d.iterdir(), tmp_path / "board" / "x.json"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o666 & ~umask}
    assert {stat.S_IMODE(p.stat().st_mode) for p in (d, d.parent, tmp_path / "board")} == {0o777 & ~umask}


@pytest.mark.parametrize("status, policy, expected", [
    ("ok", "never", False), ("ok", "failed", False), ("ok", "all", True),
    ("failed", "never", False), ("failed", "failed", True), ("partial", "never", True), ("missing", "never", True),
])
def test_rerun_policies(tmp_path, status, policy, expected):
    store = Store(tmp_path)
    s = spec()
    if status in ("ok", "failed", "partial"):
        store.begin(s)
    if status in ("ok", "failed"):
        store.finish(s, RunResult(s.run_id, status), {}, {"test_p": np.ones(2)} if status == "ok" else None)
    assert store.needs_run(s, policy) is expected


def test_half_written_run_is_replaced_and_nothing_unknown_is_deleted(tmp_path):
    store = Store(tmp_path)
    done, half, odd = spec(1), spec(2), spec(3)
    store_ok(store, done, 0.8)
    d = store.begin(half)
    (d / "predictions.npz").write_bytes(b"garbage from a killed process")
    assert store.status(half) == "partial"
    assert [r.spec.run_id for r in store.runs("s")] == [done.run_id]
    store_ok(store, half)  # the new attempt replaces the leftovers (store files only: deleted)
    np.testing.assert_array_equal(store.load("s", half.run_id).predictions()["test_p"], [0.1, 0.9])
    assert store.load("s", done.run_id).result.metrics["test_auc"] == 0.8
    # a folder holding something the store did not write is moved aside, never deleted
    d = store.run_dir("s", odd.run_id)
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    store_ok(store, odd)
    [kept] = (tmp_path / "s" / "_quarantine").iterdir()
    assert (kept / "notes.txt").read_text() == "mine" and store.status(odd) == "ok"
    assert leftovers(store) == []


def test_rerun_keeps_the_old_result_until_the_new_one_is_complete(tmp_path):
    store = Store(tmp_path)
    s = spec()
    store_ok(store, s, 0.7)
    d = store.run_dir("s", s.run_id)
    before = snapshot(d)
    store.begin(s, {"host": "h"})  # --rerun all starts again…
    assert snapshot(d) == before  # …without touching the stored run, which stays readable
    assert store.load("s", s.run_id).result.metrics == {"test_auc": 0.7}
    store.finish(s, RunResult(s.run_id, "failed", error="x"), {})
    assert store.load("s", s.run_id).result.status == "failed"
    assert sorted(p.name for p in d.iterdir()) == ["provenance.json", "result.json", "spec.json"]  # no old files


WRITE_SITES = ["spec.json", "predictions.npz", "provenance.json", "log.txt", "result.json"]


@pytest.mark.parametrize("site", WRITE_SITES)
def test_disk_full_at_any_write_of_a_rerun_keeps_the_old_result(tmp_path, monkeypatch, site):
    store = Store(tmp_path)
    s = spec()
    store_ok(store, s, 0.7)
    d = store.run_dir("s", s.run_id)
    before = snapshot(d)
    real = atomic._write_all

    def full(fd, data, path):
        if path.name == site:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data, path)

    monkeypatch.setattr(atomic, "_write_all", full)
    with pytest.raises(WriteError) as info:
        store.begin(s)
        store.finish(s, RunResult(s.run_id, "ok", {"test_auc": 0.9}), {}, {"test_p": np.array([0.5])}, "new log")
    message = str(info.value)
    assert site in message and "no space left on device" in message and " free there" in message
    assert len(message.splitlines()) == 1
    assert snapshot(d) == before and store.load("s", s.run_id).result.metrics == {"test_auc": 0.7}
    store.release(s)
    assert leftovers(store) == []


def test_a_failed_swap_puts_the_old_run_back(tmp_path, monkeypatch):
    store = Store(tmp_path)
    s = spec()
    store_ok(store, s, 0.7)
    d = store.run_dir("s", s.run_id)
    before = snapshot(d)
    real = os.rename

    def failing(src, dst):
        if str(dst) == str(d):
            if str(src).endswith(".new"):
                raise OSError(errno.EIO, "I/O error")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "rename", failing)
    store.begin(s)
    with pytest.raises(OSError, match="I/O error"):
        store.finish(s, RunResult(s.run_id, "ok", {"test_auc": 0.9}), {})
    assert snapshot(d) == before and leftovers(store) == []


def test_a_crash_while_finishing_leaves_an_unfinished_run(tmp_path, monkeypatch):
    store = Store(tmp_path)
    s = spec()
    store.begin(s)
    real = atomic._write_all

    def crash_on_result(fd, data, path):
        if path.name == "result.json":
            raise RuntimeError("killed")
        real(fd, data, path)

    monkeypatch.setattr(atomic, "_write_all", crash_on_result)
    with pytest.raises(RuntimeError):
        store.finish(s, RunResult(s.run_id, "ok"), {"seed": 1})
    assert store.status(s) == "partial"  # without result.json it is not done, and no half result is visible
    assert [p.name for p in store.run_dir("s", s.run_id).iterdir()] == ["spec.json"]
    assert leftovers(store) == []


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    atomic.atomic_write_json(target, {"a": 1})
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "disk full")))
    with pytest.raises(WriteError, match="x.json.*: cannot write: no space left on device"):
        atomic.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_a_read_only_store_is_one_line_naming_the_path(tmp_path, monkeypatch):
    store = Store(tmp_path / "ro")

    def read_only(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(atomic.Path, "mkdir", read_only)
    with pytest.raises(WriteError, match=r"ro/\.ctrbench/claims/s: cannot write: read-only file system"):
        store.claim(spec(), {})


# -- claims --------------------------------------------------------------------------------------------

def test_claims_give_one_writer_and_name_the_holder(tmp_path):
    a, b = Store(tmp_path), Store(tmp_path)  # two handles, as two processes would have
    s = spec()
    assert a.attempt(s) is None and a.claimant(s) is None
    claim = a.claim(s, {"invocation": "inv-a"})
    assert claim is not None and a.holds(s)
    assert b.claim(s, {"invocation": "inv-b"}) is None  # held by a live process (this one)
    holder = b.claimant(s)
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert holder["invocation"] == "inv-a" and "token" in holder and b.attempt(s)["invocation"] == "inv-a"
    a.release(s)
    assert b.claimant(s) is None and b.claim(s, {}) is not None
    b.release(s)
    assert not a.claim_path("s", s.run_id).exists()


def test_running_marker_names_the_worker_until_the_result_is_written(tmp_path):
    store, s = Store(tmp_path), spec()
    assert store.attempt(s) is None
    attempt = {"invocation": "abc", "host": "node7", "pid": 42, "started_at": 1.0}
    d = store.begin(s, attempt)  # taking the run's claim (begin without one claims the run itself)
    assert store.attempt(s) == attempt and store.status(s) == "partial"
    assert Store(tmp_path).claimant(s)["invocation"] == "abc"
    with pytest.raises(StoreError, match=f"run {s.run_id} is being computed by .*:{os.getpid()}; not writing"):
        Store(tmp_path).begin(s)  # a second writer is refused
    store.finish(s, RunResult(s.run_id, "ok"), {}, {"test_p": np.ones(1)})
    assert store.attempt(s) is None and not (d / "running.json").exists() and store.status(s) == "ok"
    assert Store(tmp_path).claimant(s) is None  # released with the result
    # a worker killed mid-run leaves its marker (who ran it) and no result; the next attempt replaces both
    store.begin(spec(2), attempt)
    store.release(spec(2))
    assert store.status(spec(2)) == "partial" and store.attempt(spec(2))["host"] == "node7"
    store.begin(spec(2), {**attempt, "host": "node8"})
    assert store.attempt(spec(2))["host"] == "node8"
    store.release(spec(2))


def write_claim(store: Store, s: RunSpec, **info) -> None:
    path = store.claim_path(s.suite, s.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"token": "deadbeefdeadbeef", "invocation": "old", **info}))


def test_a_dead_holders_claim_is_taken_over_and_its_leftovers_cleaned(tmp_path):
    store, s = Store(tmp_path), spec()
    store_ok(store, s, 0.7)
    write_claim(store, s, host=socket.gethostname(), pid=dead_pid())
    area = store.work_area("s")
    (area / f"{s.run_id}.deadbeefdeadbeef.new").mkdir(parents=True)  # the killed process's work
    assert store.claimant(s) is None and store.attempt(s)["invocation"] == "old"
    claim = store.claim(s, {"invocation": "new"})
    assert claim is not None and claim.taken_over["invocation"] == "old"
    assert list(area.iterdir()) == []
    store.release(s)


def test_a_swap_interrupted_by_a_kill_is_undone_by_the_next_claim(tmp_path):
    store, s = Store(tmp_path), spec()
    store_ok(store, s, 0.7)
    d = store.run_dir("s", s.run_id)
    before = snapshot(d)
    area = store.work_area("s")
    d.rename(area / f"{s.run_id}.deadbeefdeadbeef.old")  # killed between the two renames of a swap
    (area / f"{s.run_id}.deadbeefdeadbeef.new").mkdir()
    write_claim(store, s, host=socket.gethostname(), pid=dead_pid())
    assert store.sweep("s") == 1
    assert snapshot(d) == before and list(area.iterdir()) == [] and not store.claim_path("s", s.run_id).exists()


def test_pid_reuse_and_remote_hosts(tmp_path, monkeypatch):
    store, s = Store(tmp_path), spec()
    parent = os.getppid()  # alive, on this host
    write_claim(store, s, host=socket.gethostname(), pid=parent, proc_start=claims.process_start(parent))
    assert store.claimant(s)["pid"] == parent
    write_claim(store, s, host=socket.gethostname(), pid=parent, proc_start="1")  # same pid, another process
    assert store.claimant(s) is None
    write_claim(store, s, host=socket.gethostname(), pid=dead_pid(), pid_ns="pid:[1]")  # another container
    assert store.claimant(s)["pid_ns"] == "pid:[1]"  # its pids cannot be seen from here: the heartbeat decides
    write_claim(store, s, host="node-elsewhere", pid=1)  # another host: alive while its heartbeat is fresh
    assert store.claimant(s)["host"] == "node-elsewhere"
    old = time.time() - claims.DEFAULT_REMOTE_TIMEOUT - 5
    os.utime(store.claim_path("s", s.run_id), (old, old))
    assert store.claimant(s) is None
    monkeypatch.setenv(claims.TIMEOUT_ENV, str(claims.DEFAULT_REMOTE_TIMEOUT * 2))
    assert store.claimant(s)["host"] == "node-elsewhere"
    assert store.claim(s, {}) is None


def test_many_processes_racing_for_one_stale_claim_elect_one(tmp_path):
    store, s = Store(tmp_path), spec()
    write_claim(store, s, host=socket.gethostname(), pid=dead_pid())
    path = store.claim_path("s", s.run_id)
    script = (f"import sys, time; sys.path.insert(0, {str(tmp_path)!r}); from pathlib import Path\n"
              "from ctrbench.claims import try_claim\n"
              "while time.time() < float(sys.argv[1]): pass\n"
              f"got = try_claim(Path({str(path)!r}), {{}})\n"
              "print('won' if not isinstance(got, dict) else 'lost'); sys.stdout.flush(); time.sleep(1.5)\n")
    start = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs) == ["lost", "lost", "lost", "won"]


# -- broken runs: one line, and store check ----------------------------------------------------------------

def corrupt(d, how: str) -> None:
    if how == "result-list":
        (d / "result.json").write_text("[1, 2]")
    elif how == "result-garbage":
        (d / "result.json").write_text("{not json")
    elif how == "no-spec":
        (d / "spec.json").unlink()
    elif how == "spec-garbage":
        (d / "spec.json").write_text("\x00\x01")
    elif how == "no-provenance":
        (d / "provenance.json").unlink()
    elif how == "provenance-garbage":
        (d / "provenance.json").write_text("[")
    elif how == "predictions-truncated":
        data = (d / "predictions.npz").read_bytes()
        (d / "predictions.npz").write_bytes(data[: len(data) // 2])


CORRUPTIONS = ["result-list", "result-garbage", "no-spec", "spec-garbage", "no-provenance", "provenance-garbage",
               "predictions-truncated"]


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_broken_run_is_one_line_naming_it_and_store_check_moves_it_aside(tmp_path, how):
    store, good, bad = Store(tmp_path), spec(1), spec(2)
    store_ok(store, good)
    store_ok(store, bad)
    d = store.run_dir("s", bad.run_id)
    corrupt(d, how)

    def read_all() -> None:
        for run in store.collect([good, bad]):
            run.predictions()
            run.provenance()

    readers = [read_all, lambda: [(r.predictions(), r.provenance()) for r in store.runs("s")],
               lambda: (store.find(bad.run_id).predictions(), store.find(bad.run_id).provenance())]
    if how not in ("provenance-garbage", "predictions-truncated"):  # status reads no content beyond the JSON
        readers.append(lambda: store.status(bad))
    for reader in readers:
        with pytest.raises(StoreError) as info:
            reader()
        message = str(info.value)
        assert message.startswith(str(d)) and "ctrbench store check" in message and "--fix" in message
        assert len(message.splitlines()) == 1
    [problem] = store.check()
    assert problem.path == d and problem.kind in ("unreadable", "inconsistent")
    files = {p.name for p in d.iterdir()}
    [(_, dest, note)] = store.fix([problem])
    assert note == "moved" and dest.parent == tmp_path / "s" / "_quarantine"
    assert {p.name for p in dest.iterdir()} == files  # moved whole, nothing deleted
    assert store.check() == [] and store.status(bad) == "missing" and store.status(good) == "ok"


def test_store_check_lists_partial_and_orphaned_entries_and_leaves_live_runs_alone(tmp_path):
    store = Store(tmp_path)
    store_ok(store, spec(1))
    interrupted = store.run_dir("s", spec(2).run_id)  # a killed first run: its folder, its work folder, no claim
    interrupted.mkdir()
    (interrupted / "spec.json").write_text(json.dumps(spec(2).to_dict()))
    (store.work_area("s") / f"{spec(2).run_id}.deadbeefdeadbeef.new").mkdir(parents=True)
    live = spec(3)
    store.claim(live, {})
    store.begin(live)  # being computed right now (by this process): not a problem
    write_claim(store, spec(4), host=socket.gethostname(), pid=dead_pid())
    found = {(p.kind, p.path.name.split(".")[0]) for p in store.check()}
    assert found == {("partial", spec(2).run_id), ("orphaned", spec(2).run_id), ("orphaned", spec(4).run_id)}
    store.fix(store.check())
    assert store.check() == [] and store.status(live) == "partial" and store.status(spec(2)) == "missing"
    assert len(list((tmp_path / "s" / "_quarantine").iterdir())) == 2  # the folder and the work folder, kept
    store.release(live)


def test_store_check_finds_temp_folders_of_killed_stage_computations_but_not_live_ones(tmp_path):
    """A stage computation killed midway leaves `_stages/.<key>.<token>/`; one being computed holds the stage's
    file lock, so check leaves it alone until the lock is free, and fix moves the leftover aside."""
    from filelock import FileLock

    store = Store(tmp_path)
    stages = tmp_path / "_stages"
    done = stages / "clickprompt-pamlm-0123456789abcdef"
    done.mkdir(parents=True)
    (done / ".done").write_text("clickprompt-pamlm\n")
    killed = stages / ".clickprompt-pamlm-0123456789abcdef.a1b2c3d4e5f6"
    live = stages / ".text-tokens-fedcba9876543210.0f0f0f0f0f0f"
    killed.mkdir()
    live.mkdir()
    (stages / ".clickprompt-pamlm-0123456789abcdef.lock").touch()  # a lock file is not a leftover folder
    holder = FileLock(stages / ".text-tokens-fedcba9876543210.lock")
    holder.acquire()
    try:
        found = store.check()
        assert [(p.kind, p.path) for p in found] == [("orphaned", killed)]
        assert store.check(["s"]) == []  # a suite-only check does not look at the shared stages
        (fixed,) = store.fix(found)
        assert fixed[2] == "moved" and not killed.exists() and fixed[1].parent == stages / "_quarantine"
        assert live.is_dir() and (done / ".done").exists() and store.check() == []
    finally:
        holder.release()
    assert [p.path for p in store.check()] == [live]  # its computation is gone: now a leftover too
