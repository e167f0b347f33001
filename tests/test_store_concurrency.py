"""Several real ``ctrbench run`` processes on one store: every run is computed exactly once, by one writer;
a claim left by a killed process is taken over by the next run; nothing is left behind.

The processes load a small test plugin (written into the test's folder) whose method counts every run it
computes in a shared file before training the plain ``ctr`` method; they run in-process (``--workers 1``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import ctrbench.cli as cli
from ctrbench.plugins import load_plugins
from ctrbench.store import Store
from ctrbench.suite import expand, load_suite

PLUGIN = '''
import os, time
from pathlib import Path
from ctrbench import hookimpl


class Counting:
    """Appends "<run_id> <pid>" to ``counter`` for each run it computes. ``parties``: the first run of each process
    waits until that many processes have arrived (so they really run at once). ``block``: the first run to
    create this file (in any process) blocks forever, as a process hanging mid-run."""

    def __init__(self, counter: str = "", arrived: str = "", parties: int = 1, block: str = "") -> None:
        self.counter, self.arrived, self.parties, self.block = counter, Path(arrived), parties, block

    def run(self, ctx):
        with open(self.counter, "a") as f:
            f.write(f"{ctx.spec.run_id} {os.getpid()}\\n")
        if self.block:
            try:
                os.close(os.open(self.block, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                time.sleep(600)
            except FileExistsError:
                pass
        if self.parties > 1:
            self.arrived.mkdir(exist_ok=True)
            me = self.arrived / str(os.getpid())
            if not me.exists():
                me.touch()
                deadline = time.monotonic() + 180
                while len(list(self.arrived.iterdir())) < self.parties and time.monotonic() < deadline:
                    time.sleep(0.02)
        return ctx.plugins.registry("methods").get("ctr").create().run(ctx)


@hookimpl
def ctrbench_register_methods(register):
    register("counting", Counting, summary="test only: counts the runs it computes")
'''

DRIVER = '''
import sys
sys.path.insert(0, sys.argv[1])
import counting_plugin
import ctrbench.cli as cli
from ctrbench.plugins import load_plugins
cli.load_plugins = lambda: load_plugins(extra=[("counting", counting_plugin)])
sys.exit(cli.main(sys.argv[2:]))
'''


def suite_file(tmp_path: Path, seeds: int, **method: object) -> Path:
    config = ", ".join(f"{k}: {v}" for k, v in {"counter": tmp_path / "counter", **method}.items())
    text = f"""
    schema_version: 1
    name: conc
    analysis: overall
    datasets: [{{name: synthetic, num_samples: 600, num_fields: 3, vocab_size: 20, history_length: 0}}]
    seeds: {list(range(1, seeds + 1))}
    defaults:
      method: {{name: counting, {config}}}
      ctr: lr
      train: {{epochs: 1, batch_size: 256}}
    """
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    (tmp_path / "counting_plugin.py").write_text(PLUGIN)
    (tmp_path / "drive.py").write_text(DRIVER)
    return tmp_path


def start(tmp_path: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(tmp_path / "drive.py"), str(tmp_path), *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def computed(tmp_path: Path) -> list[tuple[str, int]]:
    return [(r, int(p)) for r, p in (line.split() for line in (tmp_path / "counter").read_text().splitlines())]


def leftovers(store: Path) -> list[Path]:
    """Work folders, claims and running markers: none may remain once every process is done."""
    meta = store / ".ctrbench"
    return [p for p in meta.rglob("*") if p.is_file() or p.name.endswith((".new", ".old"))] + \
        list(store.glob("*/*/running.json"))


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 3])
def test_concurrent_runs_on_one_store_compute_each_run_exactly_once(plugin_dir, processes):
    tmp_path = plugin_dir
    suite = suite_file(tmp_path, 40, arrived=tmp_path / "arrived", parties=processes)
    procs = [start(tmp_path, "run", str(suite), "--store", "st", "--workers", "1") for _ in range(processes)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * processes, "\n".join(o[-3000:] for o in outs)
    runs = computed(tmp_path)
    run_ids = {s.run_id for s in expand(load_suite(suite))}
    assert len(runs) == 40 and {r for r, _ in runs} == run_ids  # every run computed exactly once
    assert len({pid for _, pid in runs}) > 1  # …by several processes at once
    store = Store(tmp_path / "st")
    assert {r.spec.run_id for r in store.runs("conc")} == run_ids
    assert {r.provenance()["worker"]["pid"] for r in store.runs("conc")} == {pid for _, pid in runs}
    assert store.check() == [] and leftovers(tmp_path / "st") == []
    assert all("leaderboard: leaderboards/conc.md (40 of 40 runs)" in o for o in outs)
    # a process that met a run held by another said so, and took that process's result
    # (the first run of each process waits for the others, so each of them met at least one held run)
    assert sum("is being computed by" in o for o in outs) >= processes - 1


@pytest.mark.slow
def test_a_killed_claimers_run_is_waited_for_then_taken_over(plugin_dir, capsys, monkeypatch):
    tmp_path = plugin_dir
    suite = suite_file(tmp_path, 2, block=tmp_path / "blocked")
    child = start(tmp_path, "run", str(suite), "--store", "st", "--workers", "1")
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "blocked").exists():  # the child claimed the first run and hangs in it
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()[0]
            time.sleep(0.1)
        first, second = expand(load_suite(suite))
        store = Store(tmp_path / "st")
        claim = json.loads(store.claim_path("conc", first.run_id).read_text())
        assert claim["pid"] == child.pid and claim["host"] == socket.gethostname()

        def kill_once_the_other_run_is_stored() -> None:
            while not (store.run_dir("conc", second.run_id) / "result.json").exists():
                time.sleep(0.05)
            time.sleep(1.0)  # this process now waits for the hanging one
            child.send_signal(signal.SIGKILL)
            child.wait()

        killer = threading.Thread(target=kill_once_the_other_run_is_stored, daemon=True)
        killer.start()
        spec = importlib.util.spec_from_file_location("counting_plugin", tmp_path / "counting_plugin.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setattr(cli, "load_plugins", lambda: load_plugins(extra=[("counting", module)]))
        monkeypatch.chdir(tmp_path)
        assert cli.main(["run", str(suite), "--store", "st", "--workers", "1"]) == 0
        killer.join(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    out = capsys.readouterr().out
    assert f"run {first.run_id} is being computed by {socket.gethostname()}:{child.pid}" in out
    assert child.returncode == -signal.SIGKILL
    assert computed(tmp_path) == [(first.run_id, child.pid), (second.run_id, os.getpid()),
                                  (first.run_id, os.getpid())]
    runs = {r.spec.run_id: r for r in store.runs("conc")}
    assert all(r.result.ok and r.provenance()["worker"]["pid"] == os.getpid() for r in runs.values())
    assert len(runs) == 2 and store.check() == [] and leftovers(tmp_path / "st") == []
