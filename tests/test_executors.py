"""Executors: `local` (parallel CPU worker processes, or in-process), `local-gpus`, `ray` (a real local Ray
cluster) and `slurm` (submitit's local executor) run the quickstart suite into one store; a worker killed
mid-run leaves an unfinished run that the next invocation completes; a stage many runs need is computed once
across processes; the live progress view."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import pickle
import types
from pathlib import Path

import pytest
import test_executors_helpers as helpers
from rich.console import Console

import ctrbench.cli as cli
from ctrbench.errors import CtrbenchError, SuiteError
from ctrbench.plugins import load_plugins
from ctrbench.progress import SuiteProgress
from ctrbench.results import RunResult
from ctrbench.runner import RunJob, Session
from ctrbench.spec import ComponentRef, RunSpec
from ctrbench.store import Store
from ctrbench.suite import load_suite
from ctrbench_executors.local_gpus import LocalGpusExecutor, assign_slots, visible_devices
from ctrbench_executors.plugin import LocalExecutor
from ctrbench_executors.pool import cpu_cores, init_worker

QUICKSTART = str(Path(__file__).resolve().parents[1] / "suites" / "quickstart.yaml")
# quickstart's four backbones, one seed, on a small synthetic set: seconds per run on one thread
SMALL = ["dataset={name: synthetic, num_samples: 2000, num_fields: 4, vocab_size: 30, history_length: 0}",
         "seeds=[1]", "train.epochs=1", "train.max_samples=800"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the CLI loads the test plugin too; RunJob ships it to the workers by module name
    monkeypatch.setattr(cli, "load_plugins", lambda: load_plugins(extra=[("executor-test", helpers)]))
    return tmp_path


def run(*argv: str) -> int:
    return cli.main(["run", QUICKSTART, "--store", "runs", *argv])


def stored(workdir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (workdir / "runs").glob("*/*/result.json")}


def provenances(workdir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (workdir / "runs").glob("*/*/provenance.json")]


def unfinished(workdir: Path) -> list[Path]:
    return [d for d in (workdir / "runs" / "quickstart").iterdir() if not (d / "result.json").exists()]


def check_killed_run_then_resumed(workdir: Path, capsys, executor: str, n_runs: int, threads: int) -> None:
    """First invocation: one worker dies mid-run, the others finish; the second one runs only that run."""
    marker = workdir / "crashed"
    args = ["--set", *SMALL, f"method={{name: crash-once, marker: {marker}}}", f"executor={executor}"]
    assert run(*args) == 1
    out = capsys.readouterr().out
    assert f"1 of {n_runs} runs failed" in out and "the run did not finish" in out
    results = stored(workdir)
    assert len(results) == n_runs - 1 and all(r["status"] == "ok" for r in results.values())
    [dead] = unfinished(workdir)  # no half result: spec.json and the dead worker's marker, no result.json
    assert dead.name == marker.read_text().split()[0]
    assert {p.name for p in dead.iterdir()} == {"spec.json", "running.json"}
    assert json.loads((dead / "running.json").read_text())["pid"] != os.getpid()
    workers = [p["worker"] for p in provenances(workdir)]
    assert all(w["pid"] != os.getpid() and w["threads"] == threads for w in workers)

    assert run(*args) == 0  # a plain rerun completes the suite: unfinished runs count as not done
    assert f"executing 1 of {n_runs} runs" in capsys.readouterr().out
    results = stored(workdir)
    assert len(results) == n_runs and all(r["status"] == "ok" for r in results.values())
    assert not unfinished(workdir) and not list((workdir / "runs").glob("*/*/running.json"))
    assert (workdir / "leaderboards" / "quickstart.md").exists()


# -- ray ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_killed_task_is_left_unfinished_and_completed_by_the_next_run(ray_cluster, workdir, capsys):
    check_killed_run_then_resumed(workdir, capsys, "{name: ray, num_cpus: 1}", n_runs=4, threads=1)
    assert ray_cluster.is_initialized()  # the executor leaves a cluster it did not start running


# -- slurm through submitit ----------------------------------------------------------------------------

@pytest.mark.slow
def test_slurm_on_submitit_local_cluster_killed_job_then_resumed(workdir, capsys):
    executor = "{name: slurm, cluster: local, cpus: 1, time: 10, parallelism: 2, poll_seconds: 0.2}"
    marker = workdir / "crashed"
    args = ["--set", *SMALL, "grid.ctr=[lr, dnn]", f"method={{name: crash-once, marker: {marker}}}",
            f"executor={executor}"]
    assert run(*args) == 1
    out = capsys.readouterr().out
    assert "1 of 2 runs failed" in out and "SLURM job" in out
    assert len(stored(workdir)) == 1 and len(unfinished(workdir)) == 1
    assert list((workdir / "runs" / "_slurm").iterdir())  # submitit's pickles and logs, beside the store
    assert run(*args) == 0
    assert "executing 1 of 2 runs" in capsys.readouterr().out
    assert len(stored(workdir)) == 2 and not unfinished(workdir)
    assert all(w["worker"]["threads"] == 1 and w["worker"]["pid"] != os.getpid() for w in provenances(workdir))


def test_slurm_time_limits_and_bad_settings():
    from ctrbench_slurm.executor import SlurmExecutor, minutes

    assert [minutes(v) for v in (90, "90", "1:30:00", "30:00", "2-00:00:00", 0.5)] == [90, 90, 90, 30, 2880, 1]
    params = SlurmExecutor(partition="gpu", time="2:00:00", gpus=1, cpus=8).parameters("x")
    assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 120
    assert params["gpus_per_node"] == 1 and params["cpus_per_task"] == 8
    with pytest.raises(SuiteError, match="time must be minutes"):
        SlurmExecutor(time="soon")
    with pytest.raises(SuiteError, match="cluster must be one of slurm, local"):
        SlurmExecutor(cluster="aws")


# -- local: CPU worker processes --------------------------------------------------------------------------

def metrics_of(store: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text())["metrics"] for p in store.glob("*/*/result.json")}


@pytest.mark.slow
def test_local_workers_run_in_parallel_processes_with_the_in_process_metrics(workdir, capsys):
    """Two one-thread worker processes run the grid at once, compute a shared stage once, and store the
    metrics the sequential in-process run gets for the same seeds, bit for bit."""
    counter, arrived = workdir / "stage-computed", workdir / "arrived"
    method = f"method={{name: rendezvous, dir: {arrived}, parties: 2, stage_counter: {counter}}}"
    args = ["--threads", "1", "--set", *SMALL, "grid.ctr=[lr, fm, dnn]", method]
    omp_before = os.environ.get("OMP_NUM_THREADS")

    assert cli.main(["run", QUICKSTART, "--store", "runs", *args, "executor={name: local, workers: 2}"]) == 0
    assert "executing 3 of 3 runs" in capsys.readouterr().out
    parallel = metrics_of(workdir / "runs")
    assert len(parallel) == 3
    workers = [p["worker"] for p in provenances(workdir)]
    pids = {w["pid"] for w in workers}
    assert len(pids) == 2 and os.getpid() not in pids  # each worker ran at least one run (the rendezvous)
    assert all(w["threads"] == 1 for w in workers)
    assert {pid: (arrived / str(pid)).read_text() for pid in pids} == {pid: "1 1" for pid in pids}  # OMP, torch
    assert os.environ.get("OMP_NUM_THREADS") == omp_before  # set for the workers only
    assert len(counter.read_text().splitlines()) == 1  # both workers asked for the stage; one computed it
    assert len(list((workdir / "runs" / "_stages").glob("shared-*"))) == 1
    assert not list((workdir / "runs").glob("*/*/running.json"))

    assert cli.main(["run", QUICKSTART, "--store", "seq", *args, "executor={name: local, workers: 1}"]) == 0
    sequential = metrics_of(workdir / "seq")
    assert {json.loads(p.read_text())["worker"]["pid"] for p in (workdir / "seq").glob("*/*/provenance.json")} \
        == {os.getpid()}
    assert sorted(sequential) == sorted(parallel)  # same specs, same run ids
    for run_id, m in parallel.items():
        seq = sequential[run_id]
        assert (m["test_auc"], m["test_logloss"]) == (seq["test_auc"], seq["test_logloss"])
        assert 0.4 < m["test_auc"] < 1


def test_pool_gives_up_on_workers_that_die_before_running_anything(tmp_path, monkeypatch):
    """A worker that cannot start breaks every pool before any run begins: each run counts an attempt per
    pool, so the executor reports them lost after the retries instead of restarting pools forever."""
    import threading

    import ctrbench_executors.pool as pool

    starts = tmp_path / "starts"
    monkeypatch.setenv("CTRBENCH_TEST_STARTS", str(starts))
    monkeypatch.setattr(pool, "init_worker", helpers.exit_at_start)  # pickled by name: the child imports helpers
    job = RunJob(load_suite(QUICKSTART, SMALL), str(tmp_path), str(tmp_path), device="cpu", invocation="inv")
    specs = [_spec("lr", 1), _spec("lr", 2), _spec("lr", 3)]
    results: list[RunResult] = []
    consumer = threading.Thread(target=lambda: results.extend(pool.run_in_pool(specs, job, Store(tmp_path), 2,
                                                                               "local")), daemon=True)
    consumer.start()
    consumer.join(120)
    assert not consumer.is_alive(), "the pool kept restarting workers that die at start"
    assert sorted(r.run_id for r in results) == sorted(s.run_id for s in specs)
    assert all(not r.ok and "local worker processes exited before running anything" in r.error for r in results)
    pools = pool.RETRIES_AFTER_POOL_CRASH + 1
    assert pools <= len(starts.read_text().splitlines()) <= 2 * pools  # one or two workers per pool


def test_stopping_the_pool_terminates_busy_workers(tmp_path):
    """What Ctrl-C or a DataError does to the workers: a run in progress does not keep its worker alive."""
    import time
    from concurrent.futures import ProcessPoolExecutor

    import ctrbench_executors.pool as pool

    workers = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    for i in range(4):
        workers.submit(helpers.busy, str(tmp_path / f"started{i}"), 120)
    procs = list(workers._processes.values())
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("started*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(tmp_path.glob("started*"))) == 2  # both workers busy
    t = time.monotonic()
    pool.stop(workers)
    assert time.monotonic() - t < 10 and not any(p.is_alive() for p in procs)


def _fake_run_one(device: str = "cpu", shipped: tuple = (), in_process: tuple = ()):
    """The runner's `InProcessRun` (the typed `RunOne` executors get) over a stand-in job and session."""
    import torch

    from ctrbench.runner import InProcessRun

    infos = [types.SimpleNamespace(name=n, distribution="(in-process)", status="loaded") for n in in_process]
    session = types.SimpleNamespace(device=torch.device(device), plugins=types.SimpleNamespace(infos=infos),
                                    store=None)
    return InProcessRun(types.SimpleNamespace(plugins=tuple((n, n, "/") for n in shipped)), session, None)


def test_local_workers_setting_is_checked_and_decides_where_runs_go(workdir, capsys):
    for bad in (0, -2, "two", True, 2.5, None):
        with pytest.raises(SuiteError, match="^executor 'local': workers must be a whole number of at least 1"):
            LocalExecutor(workers=bad)
    with pytest.raises(SuiteError, match="^executor 'local': threads must be"):
        LocalExecutor(threads=0)
    assert LocalExecutor().worker_count() == cpu_cores() and LocalExecutor(workers=3).worker_count() == 3
    assert run("--set", *SMALL, "executor={name: local, workers: 0}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "executor 'local': workers must be" in err and "got 0" in err
    assert not (workdir / "runs").exists()

    specs = [_spec("lr", seed) for seed in (1, 2, 3)]
    three = LocalExecutor(workers=3)
    assert three._parallel_workers(specs, _fake_run_one()) == 3
    assert three._parallel_workers(specs[:2], _fake_run_one()) == 2  # never more workers than runs
    assert three._parallel_workers(specs[:1], _fake_run_one()) == 1  # one run: in this process
    assert LocalExecutor(workers=1)._parallel_workers(specs, _fake_run_one()) == 1
    assert three._parallel_workers(specs, lambda spec: None) == 1  # a bare callable runs in this process
    # a plugin registered in this process that workers cannot import: its runs stay in this process
    assert three._parallel_workers(specs, _fake_run_one(shipped=("a",), in_process=("a", "b"))) == 1
    assert three._parallel_workers(specs, _fake_run_one(shipped=("a",), in_process=("a",))) == 3
    # on a GPU: "auto" keeps the one in-process run on it; explicit workers is an error (CPU workers)
    assert LocalExecutor()._parallel_workers(specs, _fake_run_one("cuda")) == 1
    with pytest.raises(SuiteError, match="executor 'local': workers runs processes on the CPU"):
        three._parallel_workers(specs, _fake_run_one("cuda"))
    ran = list(LocalExecutor(workers=4).execute(specs, lambda spec: RunResult(spec.run_id, "ok")))
    assert [r.run_id for r in ran] == [s.run_id for s in specs]


# -- local-gpus --------------------------------------------------------------------------------------------

def test_local_gpus_devices_and_thread_shares(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert visible_devices() == ["3", "5"]
    assert LocalGpusExecutor().slots()[0] == ["3", "5"]
    assert assign_slots(["3", "5"], 1, None, cores=16) == (["3", "5"], 8)
    assert assign_slots(["0", "1"], 2, None, cores=16) == (["0", "0", "1", "1"], 4)
    assert assign_slots(["0", "1", "2"], 1, None, cores=2) == (["0", "1", "2"], 1)  # never 0 threads
    assert assign_slots(["0"], 1, 3, cores=16) == (["0"], 3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(SuiteError, match="no GPU is visible"):
        LocalGpusExecutor().slots()
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    monkeypatch.setenv("MKL_NUM_THREADS", "16")
    queue = multiprocessing.get_context("spawn").Queue()
    queue.put("1")
    init_worker(2, queue)  # what each pool worker runs first
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "2"


@pytest.mark.slow
def test_local_gpus_two_simulated_devices_run_pinned_workers_at_once(workdir, capsys):
    rendezvous = f"method={{name: rendezvous, dir: {workdir / 'arrived'}, parties: 2}}"
    assert run("--device", "cpu", "--set", *SMALL, rendezvous, "executor={name: local-gpus, devices: [0, 1]}") == 0
    assert "executing 4 of 4 runs (0 stored) on executor 'local-gpus'" in capsys.readouterr().out
    assert len(stored(workdir)) == 4
    workers = [p["worker"] for p in provenances(workdir)]
    device_of = {w["pid"]: w["cuda_visible_devices"] for w in workers}
    assert len(device_of) == 2 and sorted(device_of.values()) == ["0", "1"]  # one process per device
    assert all(w["threads"] == max(1, (os.cpu_count() or 1) // 2) for w in workers)
    assert all(p["device"].startswith("cpu") for p in provenances(workdir))


@pytest.mark.slow
def test_local_gpus_worker_crash_restarts_the_pool_and_finishes(workdir, capsys):
    marker = workdir / "crashed"
    args = ["--device", "cpu", "--set", *SMALL, "grid.ctr=[lr, fm, dnn]",
            f"method={{name: crash-once, marker: {marker}}}", "executor={name: local-gpus, devices: [0, 1]}"]
    assert run(*args) == 0  # the run in flight when the pool broke gets one more attempt in a fresh pool
    assert marker.exists() and len(stored(workdir)) == 3 and not unfinished(workdir)


# -- the job a worker receives ------------------------------------------------------------------------------

def test_run_job_pickles_and_pins_the_device(tmp_path, monkeypatch):
    monkeypatch.setenv("CTRBENCH_DISABLE_PLUGINS", "nothing-real")
    suite = load_suite(QUICKSTART, SMALL)
    session = Session.create(tmp_path / "store", "auto", 1, plugins=load_plugins(extra=[("t", helpers)]))
    job = RunJob.from_session(suite, session, "failed")
    job = pickle.loads(pickle.dumps(job))
    assert job.suite == suite and Path(job.store_root).is_absolute() and job.rerun == "failed"
    assert job.invocation == session.invocation
    assert job.plugins == (("t", "test_executors_helpers", str(Path(helpers.__file__).parent)),)
    assert ("CTRBENCH_DISABLE_PLUGINS", "nothing-real") in job.env
    assert job.for_worker(threads=4, gpus=1).device == "auto"
    assert job.for_worker(threads=4, gpus=0).device == "cpu"
    assert job.for_worker(threads=0.5, gpus=0).threads == 1
    cuda = RunJob(suite, "/s", "/c", device="cuda:3")
    assert cuda.for_worker(threads=2, gpus=1).device == "cuda"
    with pytest.raises(SuiteError, match="needs GPUs per run"):
        cuda.for_worker(threads=2, gpus=0)


def test_missing_engine_and_misspelt_executor_key_are_one_line_errors(workdir, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("ray", "submitit")
                        else real(name, *a))
    for name, extra in (("ray", "ctrbench[ray]"), ("slurm", "ctrbench[slurm]")):
        assert run("--set", *SMALL, "--executor", name) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"pip install {extra}" in err
    assert run("--set", *SMALL, "executor={name: ray, num_cpu: 2}") == 2
    assert "executor 'ray': unknown config key 'num_cpu' (did you mean 'num_cpus'" in capsys.readouterr().err
    with pytest.raises(CtrbenchError, match="pip install ctrbench\\[ray\\]"):
        from ctrbench_ray.executor import RayExecutor

        RayExecutor()


# -- the stage lock --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_processes_asking_for_one_stage_compute_it_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    (tmp_path / "ready").mkdir()
    counter = tmp_path / "computed"
    args = [str(tmp_path / "_stages"), str(counter), str(tmp_path / "ready")]
    procs = [ctx.Process(target=helpers.stage_process, args=(*args, str(tmp_path / f"out{i}"))) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(counter.read_text().splitlines()) == 1  # computed by one process, reused by the other
    paths = {(tmp_path / f"out{i}").read_text() for i in range(2)}
    assert len(paths) == 1 and (Path(paths.pop()) / "weights").read_text() == "w"
    assert not [p for p in (tmp_path / "_stages").iterdir() if p.name.startswith(".pretrain") and p.is_dir()]


def test_stage_without_working_file_locks_still_runs_and_keeps_the_first_copy(tmp_path, monkeypatch, caplog):
    import errno

    import ctrbench.context as context

    def no_locks(self, *a, **k):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(context.FileLock, "acquire", no_locks)
    ctx = context.RunContext(None, None, None, None, None, None, tmp_path)

    def other_process_finishes_first(out: Path) -> None:  # it publishes while this one is still computing
        (tmp_path / f"pretrain-{context.content_hash({'a': 1})}").mkdir()
        (tmp_path / f"pretrain-{context.content_hash({'a': 1})}" / ".done").write_text("pretrain\n")
        (out / "weights").write_text("mine")

    path = ctx.stage("pretrain", {"a": 1}, other_process_finishes_first)
    assert "file locks do not work" in caplog.text
    assert (path / ".done").exists() and not (path / "weights").exists()  # the first copy stays
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [path.name]  # no temp dir



def test_a_killed_stage_attempt_is_cleaned_and_stages_honour_the_umask(tmp_path):
    """The temp folder of a stage whose process was killed is removed by the next process that takes the stage's
    lock, and stage folders get the umask's permissions (group-readable on a shared store), not 0700."""
    import stat

    import ctrbench.context as context

    key = f"pretrain-{context.content_hash({'a': 1})}"
    leftover = tmp_path / f".{key}.killed01"
    leftover.mkdir()
    (leftover / "weights").write_text("half")
    other = tmp_path / ".another-stage.killed02"  # another stage's temp folder: not ours to touch
    other.mkdir()
    old = os.umask(0o022)
    try:
        ctx = context.RunContext(None, None, None, None, None, None, tmp_path)
        path = ctx.stage("pretrain", {"a": 1}, lambda out: (out / "weights").write_text("done"))
    finally:
        os.umask(old)
    assert (path / "weights").read_text() == "done"
    assert not leftover.exists() and other.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


# -- progress --------------------------------------------------------------------------------------------

def _spec(ctr: str, seed: int) -> RunSpec:
    return RunSpec("s", ComponentRef("synthetic"), ComponentRef("ctr"), ComponentRef(ctr), None, {"epochs": 1},
                   seed, {"dataset": "synthetic", "ctr": ctr, "seed": str(seed)})


def test_progress_counts_runs_started_anywhere_and_estimates_time_left(tmp_path):
    store, now = Store(tmp_path), [1000.0]
    done, running, queued, stale = _spec("dnn", 1), _spec("dnn", 2), _spec("dnn", 3), _spec("fm", 1)
    progress = SuiteProgress(Console(file=io.StringIO()), store, [done, running, queued, stale], "inv1",
                             title="s", poll_seconds=0, clock=lambda: now[0])
    store.begin(done, {"invocation": "inv1", "host": "n1", "pid": 7, "started_at": 990.0})
    store.finish(done, RunResult(done.run_id, "ok"), {"wall_seconds": 10.0})
    progress.finished(done, RunResult(done.run_id, "ok"))
    store.begin(running, {"invocation": "inv1", "host": "n2", "pid": 8, "started_at": 996.0,
                          "cuda_visible_devices": "1"})
    store.begin(stale, {"invocation": "an-earlier-run", "host": "n3", "pid": 9, "started_at": 10.0})
    snap = progress.snapshot()
    assert (snap.queued, len(snap.running), snap.done, snap.failed) == (2, 1, 1, 0)
    [r] = snap.running
    assert r.spec == running and r.where == "n2:8 gpu 1" and r.elapsed == 4.0 and r.left == 6.0
    assert snap.eta == 6.0 + 10.0 + 10.0  # one at a time so far; fm has no finished run: the dnn mean
    text = "".join(seg.text for seg in Console(width=200).render(progress))
    assert "2 queued · 1 running · 1 done · 0 failed" in text and "ETA 26s" in text and "n2:8 gpu 1" in text
    progress.finished(running, RunResult(running.run_id, "failed", error="x"))
    snap = progress.snapshot()
    assert (snap.queued, len(snap.running), snap.done, snap.failed) == (2, 0, 1, 1)


def test_progress_names_the_worker_of_each_running_run(tmp_path):
    store, now = Store(tmp_path), [1000.0]
    a, b, c = _spec("lr", 1), _spec("lr", 2), _spec("lr", 3)
    progress = SuiteProgress(Console(file=io.StringIO()), store, [a, b, c], "inv", poll_seconds=0,
                             clock=lambda: now[0])
    store.begin(a, {"invocation": "inv", "host": "box", "pid": 11, "threads": 1, "started_at": 990.0})
    assert progress.snapshot().workers == 1
    text = "".join(seg.text for seg in Console(width=200).render(progress))
    assert "2 queued · 1 running · 0 done" in text and "box:11" in text  # one worker: no count
    store.begin(b, {"invocation": "inv", "host": "box", "pid": 12, "threads": 1, "started_at": 995.0})
    now[0] += 1
    snap = progress.snapshot()
    assert snap.workers == 2 and {r.where for r in snap.running} == {"box:11", "box:12"}
    text = "".join(seg.text for seg in Console(width=200).render(progress))
    assert "2 running on 2 workers · 0 done" in text and "box:11" in text and "box:12" in text


def test_sigterm_stops_the_workers_too(tmp_path):
    """`kill PID` (or a SLURM time limit) on `ctrbench run` takes the Ctrl-C path: exit 130 and no worker left
    computing a run nobody will collect."""
    import signal
    import subprocess
    import sys
    import time

    slow = ["dataset={name: synthetic, num_samples: 20000, num_fields: 4, vocab_size: 30, history_length: 0}",
            "seeds=[1]", "train.epochs=200", "train.patience=200"]
    proc = subprocess.Popen([sys.executable, "-m", "ctrbench.cli", "run", QUICKSTART, "--store", "runs",
                             "--workers", "2", "--leaderboards", "boards", "--set", *slow],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    claims = tmp_path / "runs" / ".ctrbench" / "claims" / "quickstart"
    deadline = time.monotonic() + 120
    while len(list(claims.glob("*.json"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    pids = {json.loads(p.read_text())["pid"] for p in claims.glob("*.json")}
    assert len(pids) == 2 and proc.pid not in pids  # two workers are computing runs
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert "interrupted" in proc.stdout.read()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
