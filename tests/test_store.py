"""Store layout, atomic completion, resume and rerun policies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctrbench.errors import StoreError
from ctrbench.results import RunResult
from ctrbench.spec import ComponentRef, RunSpec
from ctrbench.store import Store


def spec(seed: int = 1) -> RunSpec:
    return RunSpec("s", ComponentRef("synthetic"), ComponentRef("ctr"), ComponentRef("dnn"), None, {"epochs": 1},
                   seed, {"ctr": "dnn", "seed": str(seed)})


def test_layout_and_roundtrip(tmp_path):
    store = Store(tmp_path)
    s = spec()
    assert store.status(s) == "missing"
    d = store.begin(s)
    assert store.status(s) == "partial" and (d / "spec.json").exists()
    store.finish(s, RunResult(s.run_id, "ok", {"test_auc": 0.7}), {"seed": 1},
                 {"test_p": np.array([0.1, 0.9])}, "log line\n")
    assert sorted(p.name for p in d.iterdir()) == ["log.txt", "predictions.npz", "provenance.json", "result.json",
                                                   "spec.json"]
    run = store.load("s", s.run_id)
    assert run.result.metrics == {"test_auc": 0.7} and run.spec == s
    np.testing.assert_array_equal(run.predictions()["test_p"], [0.1, 0.9])
    assert store.find(s.run_id[:6]).spec.run_id == s.run_id


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
        store.finish(s, RunResult(s.run_id, status), {})
    assert store.needs_run(s, policy) is expected


def test_half_written_run_is_redone_and_finished_runs_are_kept(tmp_path):
    store = Store(tmp_path)
    done, half = spec(1), spec(2)
    store.begin(done)
    store.finish(done, RunResult(done.run_id, "ok", {"test_auc": 0.8}), {})
    d = store.begin(half)
    (d / "predictions.npz").write_bytes(b"garbage from a killed process")
    assert store.status(half) == "partial"
    assert [r.spec.run_id for r in store.runs("s")] == [done.run_id]
    store.begin(half)  # a new attempt clears the leftovers
    assert not (d / "predictions.npz").exists()
    assert store.load("s", done.run_id).result.metrics["test_auc"] == 0.8


def test_corrupt_result_file_is_a_clear_error(tmp_path):
    store = Store(tmp_path)
    s = spec()
    d = store.begin(s)
    (d / "result.json").write_text("{not json")
    with pytest.raises(StoreError, match=r"result.json: unreadable result file"):
        store.status(s)


def test_a_crash_while_finishing_leaves_an_unfinished_run(tmp_path, monkeypatch):
    store = Store(tmp_path)
    s = spec()
    store.begin(s)
    import ctrbench.store as mod

    real = mod.atomic_write_json

    def crash_on_result(path, obj):
        if path.name == "result.json":
            raise RuntimeError("killed")
        real(path, obj)

    monkeypatch.setattr(mod, "atomic_write_json", crash_on_result)
    with pytest.raises(RuntimeError):
        store.finish(s, RunResult(s.run_id, "ok"), {"seed": 1})
    assert store.status(s) == "partial"  # provenance was written, but without result.json it is not done
    assert not [p for p in store.run_dir("s", s.run_id).iterdir() if p.name.endswith(".tmp")]
    assert json.loads((store.run_dir("s", s.run_id) / "spec.json").read_text())["run_id"] == s.run_id


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path, monkeypatch):
    import ctrbench.store as mod

    target = tmp_path / "x.json"
    mod.atomic_write_json(target, {"a": 1})
    monkeypatch.setattr(mod.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        mod.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_rerun_keeps_the_old_result_until_the_new_one_is_complete(tmp_path):
    store = Store(tmp_path)
    s = spec()
    store.begin(s)
    store.finish(s, RunResult(s.run_id, "ok", {"test_auc": 0.7}), {})
    store.begin(s)  # --rerun all starts again…
    assert store.load("s", s.run_id).result.metrics == {"test_auc": 0.7}  # …and the old result is still there
    store.finish(s, RunResult(s.run_id, "ok", {"test_auc": 0.71}), {})
    assert store.load("s", s.run_id).result.metrics == {"test_auc": 0.71}


def test_running_marker_names_the_worker_until_the_result_is_written(tmp_path):
    store, s = Store(tmp_path), spec()
    assert store.attempt(s) is None
    attempt = {"invocation": "abc", "host": "node7", "pid": 42, "started_at": 1.0}
    d = store.begin(s, attempt)
    assert store.attempt(s) == attempt and store.status(s) == "partial"
    store.finish(s, RunResult(s.run_id, "ok"), {})
    assert store.attempt(s) is None and not (d / "running.json").exists() and store.status(s) == "ok"
    # a worker killed mid-run leaves its marker (who ran it) and no result; the next attempt replaces both
    store.begin(spec(2), attempt)
    assert store.status(spec(2)) == "partial" and store.attempt(spec(2))["host"] == "node7"
    store.begin(spec(2), {**attempt, "host": "node8"})
    assert store.attempt(spec(2))["host"] == "node8"
