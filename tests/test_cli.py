"""Every CLI command, and every bad-input case: exact outcome, exit code, nothing stored is lost."""

from __future__ import annotations

import json
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


def run(*argv: str) -> int:
    return cli.main(list(argv))


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
    assert run("run", "suite.yaml", "--set", "seeds=[1]", "ctr=lr") == 0
    capsys.readouterr()
    [run_id] = stored(workdir)
    assert run("show", run_id[:8]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["result"]["run_id"] == run_id and shown["provenance"]["seed"] == 1
    assert run("leaderboard", "suite.yaml", "--set", "seeds=[1]", "ctr=lr", "--out", "boards") == 0
    assert (workdir / "boards" / "clitest.md").exists()
    assert run("show", "ffffffff") == 2


@pytest.mark.parametrize("text, message", [
    ("name: [oops\n", "bad.yaml:1: malformed YAML: expected ','"),
    (SUITE.replace("seeds:", "sedes:"), "key 'sedes': unknown key (did you mean 'seeds'"),
    (SUITE.replace("ctr: [lr,", "ctr: [lrr,"), "unknown ctr 'lrr' (did you mean 'lr'"),
    (SUITE.replace("name: synthetic,", "name: synthetik,"), "unknown datasets 'synthetik' (did you mean 'synthetic'"),
    (SUITE.replace("method: ctr", "method: ctrr"), "unknown methods 'ctrr' (did you mean 'ctr'"),
    (SUITE.replace("epochs: 2", "epochs: two"), "key 'defaults.train.epochs': expected an integer, got str 'two'"),
    (SUITE.replace("ctr: [lr, {name: dnn, embed_dim: 4, hidden_units: [16]}]", "ctr: []"),
     "key 'grid.ctr': empty grid axis"),
])
def test_bad_input_is_one_line_exit_2_and_keeps_results(workdir, capsys, text, message):
    assert run("run", "suite.yaml", "--set", "seeds=[1]", "ctr=lr") == 0  # something already stored
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
    (workdir / "x.yaml").write_text(textwrap.dedent(SUITE).replace("ctr: [lr,", "ctr: [exploded-model,"))
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
    assert run("run", "suite.yaml", "--set", "seeds=[1]", "ctr=lr") == 0
    before = stored(workdir)
    capsys.readouterr()
    code = run("run", "suite.yaml", "--set", f"dataset={{name: movielens-100k, source: {workdir / 'no-such-dir'}}}")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "no-such-dir" in err
    assert stored(workdir) == before


def test_half_written_run_is_rerun(workdir, capsys):
    assert run("run", "suite.yaml", "--set", "seeds=[1]", "ctr=lr") == 0
    suite = load_suite(workdir / "suite.yaml", ["seeds=[1]", "ctr=lr"])
    [spec] = expand(suite)
    d = Store(workdir / "runs").run_dir(spec.suite, spec.run_id)
    (d / "result.json").unlink()  # as if killed before the result was written
    capsys.readouterr()
    assert run("run", "suite.yaml", "--set", "seeds=[1]", "ctr=lr") == 0
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
    assert run("run", "suite.yaml", "--set", "seeds=[1]", "ctr=lr", "--threads", "1") == 0
    first = stored(workdir)
    assert run("run", "suite.yaml", "--set", "seeds=[1]", "ctr=lr", "--rerun", "all", "--threads", "1") == 0
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
