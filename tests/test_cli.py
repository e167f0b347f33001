"""Every CLI command, and every bad-input case and fault (broken stored runs, a full disk, a read-only store,
bad command-line values, Ctrl-C and sys.exit at import, a bug): exact outcome, exit code, one line, nothing
stored is lost."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import ctrbench.cli as cli
from ctrbench import hookimpl
from ctrbench.plugins import load_plugins
from ctrbench.store import Store
from ctrbench.suite import expand, load_suite

SUITE = """
schema_version: 1
name: clitest
analysis: overall
datasets: [{name: synthetic, num_samples: 3000, num_fields: 4, vocab_size: 30}]
seeds: [1, 2]
defaults:
  method: ctr
  ctr: {name: dnn, embed_dim: 4, hidden_units: [16]}
  train: {epochs: 2, batch_size: 256}
grid:
  ctr: [lr, {name: dnn, embed_dim: 4, hidden_units: [16]}]
baseline: {ctr: lr}
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suite.yaml").write_text(textwrap.dedent(SUITE))
    return tmp_path


# one run: lr, seed 1 (a single config has nothing to compare with, hence no baseline)
ONE = ["seeds=[1]", "ctr=lr", "baseline={}"]


def run(*argv: str) -> int:
    """``ctrbench ARGV``; runs stay in this process (``--workers 1``), where the tests' patches apply."""
    argv = list(argv)
    if argv[0] == "run" and "--workers" not in argv:
        argv += ["--workers", "1"]
    return cli.main(argv)


def stored(workdir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (workdir / "runs").glob("*/*/result.json")}


def test_run_stores_everything_writes_board_and_resumes(workdir, capsys):
    assert run("run", "suite.yaml", "--threads", "1") == 0
    out = capsys.readouterr().out
    assert "executing 4 of 4 runs" in out
    results = stored(workdir)
    assert len(results) == 4 and all(r["status"] == "ok" for r in results.values())
    assert all(0.5 < r["metrics"]["test_auc"] <= 1 for r in results.values())
    board = (workdir / "leaderboards" / "clitest.md").read_text()
    assert "| lr (baseline)" in board and "dnn" in board
    before = {k: v["metrics"] for k, v in results.items()}
    assert run("run", "suite.yaml") == 0
    assert "all 4 runs already stored; executing 0 runs" in capsys.readouterr().out
    assert {k: v["metrics"] for k, v in stored(workdir).items()} == before


def test_dry_run_validate_list_plugins_show_leaderboard(workdir, capsys):
    assert run("run", "suite.yaml", "--dry-run") == 0
    assert "4 of 4 runs would execute" in capsys.readouterr().out
    assert not (workdir / "runs").exists()
    assert run("validate", "suite.yaml") == 0
    assert "valid — 4 runs (0 already stored)" in capsys.readouterr().out
    assert run("list", "ctr", "*dcn*") == 0
    out = capsys.readouterr().out
    assert "dcnv2" in out and "│ dnn" not in out
    assert run("plugins") == 0
    assert "builtin-ctr" in capsys.readouterr().out
    assert run("leaderboard", "suite.yaml") == 2
    assert "no stored runs for suite 'clitest'" in capsys.readouterr().err
    assert run("run", "suite.yaml", "--set", *ONE) == 0
    capsys.readouterr()
    [run_id] = stored(workdir)
    assert run("show", run_id[:8]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["result"]["run_id"] == run_id and shown["provenance"]["seed"] == 1
    assert run("leaderboard", "suite.yaml", "--set", *ONE, "--out", "boards") == 0
    assert (workdir / "boards" / "clitest.md").exists()
    # the board directory has one name on both commands, and the other spelling as an alias
    assert run("leaderboard", "suite.yaml", "--set", *ONE, "--leaderboards", "boards2") == 0
    assert run("run", "suite.yaml", "--set", *ONE, "--out", "boards3") == 0
    assert (workdir / "boards2" / "clitest.md").read_text() == (workdir / "boards3" / "clitest.md").read_text()
    assert run("show", "ffffffff") == 2


@pytest.mark.parametrize("text, message", [
    ("name: [oops\n", "bad.yaml:1: malformed YAML: expected ','"),
    (SUITE.replace("seeds:", "sedes:"), "key 'sedes': unknown key (did you mean 'seeds'"),
    (SUITE.replace("ctr: [lr,", "ctr: [lrr,").replace("{ctr: lr}", "{ctr: lrr}"),
     "unknown ctr 'lrr' (did you mean 'lr'"),
    (SUITE.replace("name: synthetic,", "name: synthetik,"), "unknown datasets 'synthetik' (did you mean 'synthetic'"),
    (SUITE.replace("method: ctr", "method: ctrr"), "unknown methods 'ctrr' (did you mean 'ctr'"),
    (SUITE.replace("epochs: 2", "epochs: two"), "key 'defaults.train.epochs': expected an integer, got str 'two'"),
    (SUITE.replace("ctr: [lr, {name: dnn, embed_dim: 4, hidden_units: [16]}]", "ctr: []"),
     "key 'grid.ctr': empty grid axis"),
])
def test_bad_input_is_one_line_exit_2_and_keeps_results(workdir, capsys, text, message):
    assert run("run", "suite.yaml", "--set", *ONE) == 0  # something already stored
    before = stored(workdir)
    (workdir / "bad.yaml").write_text(textwrap.dedent(text))
    capsys.readouterr()
    assert run("run", "bad.yaml") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctrbench: error: bad.yaml") and message in err, err
    assert len(err.splitlines()) == 1
    assert stored(workdir) == before


def test_missing_suite_file(workdir, capsys):
    assert run("validate", "nope.yaml") == 2
    assert capsys.readouterr().err.strip() == "ctrbench: error: nope.yaml: suite file not found"


def _nan_plugin() -> types.ModuleType:
    from ctrbench_ctr.dnn import DNN

    class NaNModel(DNN):
        def interact(self, E):
            return super().interact(E) * float("nan")

    mod = types.ModuleType("nan_plugin")
    mod.ctrbench_register_ctr_backbones = hookimpl(lambda register: register("nan-dnn", NaNModel))
    return mod


def test_nan_loss_fails_that_run_only_exit_1(workdir, capsys, monkeypatch):
    monkeypatch.setattr(cli, "load_plugins", lambda: load_plugins(extra=[("nan-plugin", _nan_plugin())]))
    assert run("run", "suite.yaml", "--set", "grid.ctr=[lr, nan-dnn]") == 1
    out = capsys.readouterr().out
    assert "2 of 4 runs failed" in out
    results = stored(workdir)
    failed = [r for r in results.values() if r["status"] == "failed"]
    assert len(results) == 4 and len(failed) == 2
    assert all("loss became nan at epoch 1 step 0" in r["error"] for r in failed)
    assert "nan-dnn" in failed[0]["error"]
    # failed runs are kept, rerun=failed retries only them
    monkeypatch.setattr(cli, "load_plugins", lambda: load_plugins(extra=[("nan-plugin", _nan_plugin())]))
    assert run("run", "suite.yaml", "--set", "grid.ctr=[lr, nan-dnn]", "--rerun", "failed") == 1
    assert "executing 2 of 4 runs" in capsys.readouterr().out


def test_plugin_that_raises_on_import_is_named(workdir, capsys, monkeypatch):
    import ctrbench.plugins as plugins_mod

    real = plugins_mod._entry_points

    class EP:
        name, value, dist = "exploding", "exploding.plugin", None

        def load(self):
            raise RuntimeError("boom at import")

    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: [*real(), EP()])
    assert run("plugins") == 0
    out = capsys.readouterr().out
    assert "exploding" in out and "failed" in out and "RuntimeError: boom at import" in out
    (workdir / "x.yaml").write_text(textwrap.dedent(SUITE).replace("ctr: [lr,", "ctr: [exploded-model,")
                                         .replace("{ctr: lr}", "{ctr: exploded-model}"))
    assert run("validate", "x.yaml") == 2
    err = capsys.readouterr().err
    assert "unknown ctr 'exploded-model'" in err and "exploding: RuntimeError: boom at import" in err


def test_two_plugins_with_one_name(workdir, capsys, monkeypatch):
    dup = types.ModuleType("dup")
    dup.ctrbench_register_ctr_backbones = hookimpl(lambda register: register("dnn", object))
    monkeypatch.setattr(cli, "load_plugins", lambda: load_plugins(extra=[("dup-plugin", dup)]))
    assert run("run", "suite.yaml") == 2
    assert ("ctr 'dnn' is registered twice: by plugin 'builtin-ctr' and by plugin 'dup-plugin'"
            in capsys.readouterr().err)


def test_missing_data_file_is_exit_2_and_keeps_results(workdir, capsys):
    assert run("run", "suite.yaml", "--set", *ONE) == 0
    before = stored(workdir)
    capsys.readouterr()
    code = run("run", "suite.yaml", "--set", f"dataset={{name: movielens-100k, source: {workdir / 'no-such-dir'}}}")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "no-such-dir" in err
    assert stored(workdir) == before


def test_half_written_run_is_rerun(workdir, capsys):
    assert run("run", "suite.yaml", "--set", *ONE) == 0
    suite = load_suite(workdir / "suite.yaml", ONE)
    [spec] = expand(suite)
    d = Store(workdir / "runs").run_dir(spec.suite, spec.run_id)
    (d / "result.json").unlink()  # as if killed before the result was written
    capsys.readouterr()
    assert run("run", "suite.yaml", "--set", *ONE) == 0
    assert "executing 1 of 1 runs" in capsys.readouterr().out
    assert (d / "result.json").exists()


def test_ctrl_c_keeps_finished_runs(workdir, capsys, monkeypatch):
    import ctrbench.runner as runner

    real = runner.run_one
    calls = {"n": 0}

    def interrupting(spec, session, suite):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(spec, session, suite)

    monkeypatch.setattr(runner, "run_one", interrupting)
    assert run("run", "suite.yaml") == 130
    assert "interrupted: 1 runs finished in this call are stored" in capsys.readouterr().out
    assert len(stored(workdir)) == 1
    monkeypatch.setattr(runner, "run_one", real)
    assert run("run", "suite.yaml") == 0
    assert "executing 3 of 4 runs" in capsys.readouterr().out


def test_same_seed_same_auc_through_the_cli(workdir, capsys):
    assert run("run", "suite.yaml", "--set", *ONE, "--threads", "1") == 0
    first = stored(workdir)
    assert run("run", "suite.yaml", "--set", *ONE, "--rerun", "all", "--threads", "1") == 0
    second = stored(workdir)
    [k] = first
    assert abs(first[k]["metrics"]["test_auc"] - second[k]["metrics"]["test_auc"]) < 1e-6
    assert torch.get_num_threads() == 1


def test_a_run_finished_meanwhile_by_another_process_is_not_repeated(workdir, monkeypatch):
    import ctrbench.runner as runner

    real = runner.run_one
    executed = []

    def tracking(spec, session, suite):
        executed.append(spec.run_id)
        if len(executed) == 1:  # while the first run goes on, "another process" finishes the last one
            other = [s for s in runner.plan(suite, session.plugins) if s.run_id != spec.run_id][-1]
            real(other, session, suite)
        return real(spec, session, suite)

    monkeypatch.setattr(runner, "run_one", tracking)
    assert run("run", "suite.yaml") == 0
    assert len(executed) == 3  # 4 runs planned, one done elsewhere in the meantime
    assert len(stored(workdir)) == 4


def test_identical_runs_of_another_suite_are_reused_not_rerun(workdir, capsys):
    """Same spec (dataset, method, components, train, seed) in a second suite of the same store: copied with its
    metrics, under the second suite's labels; a run scored differently (other buckets) is computed again."""
    assert run("run", "suite.yaml", "--threads", "1") == 0
    other = SUITE.replace("name: clitest", "name: other").replace("seeds: [1, 2]", "seeds: [2, 3]")
    (workdir / "other.yaml").write_text(textwrap.dedent(other))
    capsys.readouterr()
    assert run("run", "other.yaml", "--threads", "1") == 0
    out = capsys.readouterr().out
    assert "executing 2 of 4 runs (2 stored)" in out  # seed 2 reused for both configs, seed 3 computed
    store = Store(workdir / "runs")
    first = {r.spec.run_id: r for r in store.runs("clitest")}
    again = {r.spec.run_id: r for r in store.runs("other")}
    shared = set(first) & set(again)
    assert len(shared) == 2
    for run_id in shared:
        assert again[run_id].result.metrics == first[run_id].result.metrics
        assert again[run_id].spec.suite == "other"
        assert again[run_id].provenance()["reused_from"] == f"clitest/{run_id}"
        assert np.array_equal(again[run_id].predictions()["test_p"], first[run_id].predictions()["test_p"])
    bucketed = other.replace("name: other", "name: third") + "buckets: {tail_fraction: 0.3}\n"
    (workdir / "third.yaml").write_text(textwrap.dedent(bucketed))
    capsys.readouterr()
    assert run("run", "third.yaml", "--threads", "1") == 0
    assert "executing 4 of 4 runs" in capsys.readouterr().out


def test_data_commands_are_wired_into_the_cli(tmp_path, capsys):
    from test_datasets_movielens1m import write_ml1m

    raw = write_ml1m(tmp_path / "raw")
    assert run("data", "prepare", "movielens-1m", "--source", str(raw), "--cache", str(tmp_path / "c")) == 0
    assert capsys.readouterr().out.startswith("movielens-1m: 20 rows (train 16 / valid 2 / test 2)")
    assert run("data", "info", "movielens-1x", "--cache", str(tmp_path / "c")) == 2
    assert "unknown datasets 'movielens-1x'" in capsys.readouterr().err


# -- exit codes: bad values, faults, broken runs ---------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--threads", "-1"], "--threads must be a whole number of at least 1, got -1"),
    (["--threads", "0"], "--threads must be a whole number of at least 1, got 0"),
    (["--device", "tpu"], "--device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["--workers", "0"], "--workers must be a whole number of at least 1 or 'auto', got '0'"),
    (["--executor", "local-gpus", "--workers", "2"], "--workers sets the worker processes of the local executor; "
                                                     "executor 'local-gpus' takes its settings"),
])
def test_bad_command_line_values_are_one_line_exit_2(workdir, capsys, argv, message):
    assert cli.main(["run", "suite.yaml", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ctrbench: error: {message}") and len(err.splitlines()) == 1, err
    assert not (workdir / "runs").exists()


def test_threads_default_to_one_and_workers_reach_the_local_executor(workdir, monkeypatch, capsys):
    import ctrbench.runner as runner
    from ctrbench.spec import ComponentRef

    assert cli._parser().parse_args(["run", "x.yaml"]).threads == 1
    assert runner.Session.create(workdir / "s", plugins=load_plugins()).threads == 1
    seen = []

    class InProcess:
        def execute(self, specs, run_one):
            yield from (run_one(s) for s in specs)

    monkeypatch.setattr(runner, "create_executor", lambda suite, plugins: seen.append(suite.executor) or InProcess())
    assert cli.main(["run", "suite.yaml", "--set", *ONE, "--workers", "3"]) == 0
    assert cli.main(["run", "suite.yaml", "--set", *ONE, "--workers", "auto", "--rerun", "all"]) == 0
    assert seen == [ComponentRef("local", {"workers": 3}), ComponentRef("local", {"workers": "auto"})]


def test_help_lists_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert f"\n  {code}" in out
    assert "internal error" in out and "some runs failed" in out and "bad input or environment" in out


def test_eval_max_samples_too_small_for_both_classes_is_a_data_error_before_training(workdir, capsys):
    assert run("run", "suite.yaml", "--set", *ONE, "train.eval_max_samples=2") == 2  # 2 rows of one class here
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.eval_max_samples=2: the 2 scored valid rows of dataset" in err
    assert "AUC needs both classes" in err and stored(workdir) == {}


def test_files_follow_the_umask(workdir):
    old = os.umask(0o027)
    try:
        assert run("run", "suite.yaml", "--set", *ONE) == 0
    finally:
        os.umask(old)
    [d] = [p.parent for p in (workdir / "runs").glob("*/*/result.json")]
    files = [*d.iterdir(), workdir / "leaderboards" / "clitest.md"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o640}
    assert {stat.S_IMODE(p.stat().st_mode) for p in (d, d.parent, workdir / "runs")} == {0o750}


def test_ctrl_c_during_imports_and_sys_exit_in_a_plugin_are_one_line(workdir, capsys, monkeypatch):
    import ctrbench.plugins as plugins_mod

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_plugins", interrupted)
    assert run("plugins") == 130
    assert capsys.readouterr().err.strip() == "ctrbench: interrupted"
    monkeypatch.undo()

    (workdir / "exiting_plugin.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(workdir))
    real = plugins_mod._entry_points

    class EP:
        name, value, dist = "exiting", "exiting_plugin", None

        def load(self):
            import importlib

            return importlib.import_module("exiting_plugin")

    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: [*real(), EP()])
    assert run("plugins") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "exiting_plugin.py called sys.exit(3) while being imported" in err
    assert "CTRBENCH_DISABLE_PLUGINS" in err


def test_a_bug_is_one_line_exit_3_with_the_traceback_saved_under_the_store(workdir, capsys, monkeypatch):
    def bug(self, run_id):
        return 1 / 0

    monkeypatch.setattr(Store, "find", bug)
    assert run("show", "abc") == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("ctrbench: internal error: ZeroDivisionError: division by zero")
    saved = Path(err.split("traceback saved to ")[1].split(";")[0])
    assert saved.parent == Path("runs") / ".ctrbench" / "crashes" and "in bug" in saved.read_text()


def test_a_read_only_store_is_one_line_exit_2(workdir, capsys, monkeypatch):
    real = Path.mkdir

    def read_only(self, *a, **k):
        if "runs" in self.parts:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert run("run", "suite.yaml", "--set", *ONE) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "runs/.ctrbench/claims/clitest: cannot write: read-only file system" in err


# where ``ctrbench run --rerun all`` writes: the run's files in its work folder, its claim, the board
WRITE_SITES = {
    "spec.json": lambda p: p.name == "spec.json" and p.parent.name.endswith(".new"),
    "predictions.npz": lambda p: p.name == "predictions.npz",
    "provenance.json": lambda p: p.name == "provenance.json",
    "log.txt": lambda p: p.name == "log.txt",
    "result.json": lambda p: p.name == "result.json",
    "claims": lambda p: "claims" in p.parts,
    "clitest.md": lambda p: p.name.startswith(".clitest.md."),
}


@pytest.mark.parametrize("site", WRITE_SITES)
def test_disk_full_during_rerun_all_is_one_line_and_keeps_the_old_result(workdir, capsys, monkeypatch, site):
    import ctrbench.atomic as atomic

    assert run("run", "suite.yaml", "--set", *ONE) == 0
    [d] = [p.parent for p in (workdir / "runs").glob("*/*/result.json")]
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    board = (workdir / "leaderboards" / "clitest.md").read_bytes()
    real, hit = atomic._write_all, WRITE_SITES[site]

    def full(fd, data, path):
        if hit(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data, path)

    monkeypatch.setattr(atomic, "_write_all", full)
    capsys.readouterr()
    assert run("run", "suite.yaml", "--set", *ONE, "--rerun", "all") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ctrbench: error: ") and site in err, err
    assert "cannot write: no space left on device (" in err and " free there)" in err
    if site == "clitest.md":  # the run was stored again; only the board could not be written
        assert (workdir / "leaderboards" / "clitest.md").read_bytes() == board and (d / "result.json").exists()
    else:
        assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert Store(workdir / "runs").check() == []


def test_a_broken_run_is_named_in_one_line_and_store_check_fix_lets_the_next_run_redo_it(workdir, capsys):
    from test_store import CORRUPTIONS, corrupt

    assert run("run", "suite.yaml", "--set", *ONE) == 0
    [d] = [p.parent for p in (workdir / "runs").glob("*/*/result.json")]
    shutil.copytree(d, workdir / "pristine")
    name = f"runs/clitest/{d.name}"
    for how in CORRUPTIONS:
        shutil.rmtree(d)
        shutil.copytree(workdir / "pristine", d)
        corrupt(d, how)
        capsys.readouterr()
        commands = [("validate", "suite.yaml", "--set", *ONE)]  # validate reads every file of a stored run
        if how != "predictions-truncated":  # the others read no predictions here (one config: no test to run)
            commands += [("run", "suite.yaml", "--set", *ONE), ("leaderboard", "suite.yaml", "--set", *ONE),
                         ("show", d.name[:8])]
        for argv in commands:
            assert run(*argv) == 2, (how, argv)
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and err.startswith(f"ctrbench: error: {name}: "), (how, argv, err)
            assert "`ctrbench store check --store runs --fix`" in err
        assert run("store", "check", "--store", "runs") == 1
        out = capsys.readouterr().out
        assert f"{name}: " in out and "1 problems" in out
        assert run("store", "check", "--store", "runs", "--fix") == 0
        assert "moved: " in capsys.readouterr().out and not d.exists()
        assert run("run", "suite.yaml", "--set", *ONE) == 0
        assert "executing 1 of 1 runs" in capsys.readouterr().out
        assert run("store", "check", "--store", "runs") == 0
    assert len(list((workdir / "runs" / "clitest" / "_quarantine").iterdir())) == len(CORRUPTIONS)  # all kept
