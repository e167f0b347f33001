"""`Plan`: a suite is expanded once and each run's store entry read once per ``ctrbench run``; the CLI prints from
the plan and `run_suite` executes it without planning again; the library API still takes a suite."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest

import ctrbench.cli as cli
import ctrbench.suite as suite_module
from ctrbench.errors import UsageError
from ctrbench.plan import Plan, needs_run
from ctrbench.plugins import load_plugins
from ctrbench.runner import Session, run_suite
from ctrbench.store import RERUN_POLICIES, Store
from ctrbench.suite import load_suite

SUITE = """
schema_version: 1
name: plantest
analysis: overall
datasets: [{name: synthetic, num_samples: 600, num_fields: 3, vocab_size: 12, history_length: 0}]
seeds: [1, 2]
defaults: {method: ctr, ctr: lr, train: {epochs: 1, batch_size: 128}}
grid: {ctr: [lr, fm]}
baseline: {ctr: lr}
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suite.yaml").write_text(textwrap.dedent(SUITE))
    return tmp_path


@pytest.fixture
def counted(monkeypatch):
    """Counts of suite expansions and of store reads (`Store.status`, `Store.load`) per run id."""
    counts = {"expand": 0, "status": Counter(), "load": Counter()}
    expand, status, load = suite_module._expand, Store.status, Store.load

    def counting_expand(suite):
        counts["expand"] += 1
        return expand(suite)

    def counting_status(self, spec):
        counts["status"][spec.run_id] += 1
        return status(self, spec)

    def counting_load(self, suite, run_id):
        counts["load"][run_id] += 1
        return load(self, suite, run_id)

    monkeypatch.setattr(suite_module, "_expand", counting_expand)
    monkeypatch.setattr(Store, "status", counting_status)
    monkeypatch.setattr(Store, "load", counting_load)

    def reset():
        counts["expand"] = 0
        counts["status"].clear()
        counts["load"].clear()

    counts["reset"] = reset
    return counts


def test_a_run_expands_once_and_reads_each_store_entry_once(workdir, counted, capsys):
    assert cli.main(["run", "suite.yaml", "--workers", "1"]) == 0
    assert "executing 4 of 4 runs" in capsys.readouterr().out
    assert counted["expand"] == 1
    ids = set(counted["status"])
    assert len(ids) == 4
    # planned once; read once more under the run's claim, right before computing it
    assert set(counted["status"].values()) == {2}
    # after each run: the live view reads its wall time, the leaderboard its result
    assert counted["load"] == Counter(dict.fromkeys(ids, 2))

    counted["reset"]()
    assert cli.main(["run", "suite.yaml", "--workers", "1", "--executor", "local"]) == 0
    assert "all 4 runs already stored; executing 0 runs" in capsys.readouterr().out
    assert counted["expand"] == 1  # --executor/--workers keep the loaded suite's runs
    assert counted["status"] == Counter(dict.fromkeys(ids, 1))
    assert counted["load"] == Counter(dict.fromkeys(ids, 1))  # the leaderboard's


def test_dry_run_prints_the_plan_and_writes_nothing(workdir, counted, capsys):
    assert cli.main(["run", "suite.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("run  ") == 4 and "4 of 4 runs would execute" in out
    assert not (workdir / "runs").exists()
    assert counted["expand"] == 1 and set(counted["status"].values()) == {1}


def test_validate_reads_every_run_once(workdir, counted, capsys):
    assert cli.main(["run", "suite.yaml", "--workers", "1", "--set", "seeds=[1]", "ctr=lr", "baseline={}"]) == 0
    counted["reset"]()
    assert cli.main(["validate", "suite.yaml"]) == 0
    assert "valid — 4 runs (1 already stored)" in capsys.readouterr().out
    assert counted["expand"] == 1 and set(counted["status"].values()) == {1}


def test_plan_of_a_partly_stored_suite(workdir):
    suite = load_suite("suite.yaml", ["seeds=[1]"])
    session = Session.create("runs", device="cpu", plugins=load_plugins())
    first = Plan.make(suite, session.plugins, session.store)
    assert len(first.todo) == 2 and not first.stored and first.count("missing") == 2
    outcome = run_suite(first, session)  # the plan made above, executed as is
    assert [r.ok for r in outcome.results] == [True, True] and outcome.specs == list(first.specs)

    again = Plan.make(load_suite("suite.yaml"), session.plugins, session.store)
    assert len(again.specs) == 4 and len(again.stored) == 2 and len(again.todo) == 2
    assert {s.run_id for s in again.stored} == {s.run_id for s in first.specs}
    every = Plan.make(load_suite("suite.yaml"), session.plugins, session.store, rerun="all")
    assert len(every.todo) == 4 and set(every.stamps) == {s.run_id for s in every.specs}
    assert sum(v is not None for v in every.stamps.values()) == 2  # the stored ones have a result to compare


def test_run_suite_takes_a_suite_or_a_plan_it_can_execute(workdir):
    suite = load_suite("suite.yaml", ["seeds=[1]", "ctr=lr", "baseline={}"])
    session = Session.create("runs", device="cpu", plugins=load_plugins())
    outcome = run_suite(suite, session)  # the library API: the plan is made inside
    assert outcome.executed == 1 and outcome.results[0].ok
    assert run_suite(suite, session).executed == 0
    plan = Plan.make(suite, session.plugins, session.store)
    with pytest.raises(UsageError, match="made with rerun='never', not 'all'"):
        run_suite(plan, session, rerun="all")
    elsewhere = Plan.make(suite, session.plugins, Store(workdir / "other"))
    with pytest.raises(UsageError, match="the plan read store"):
        run_suite(elsewhere, session)


def test_identical_runs_of_another_suite_are_adopted_when_planned(workdir, capsys):
    assert cli.main(["run", "suite.yaml", "--workers", "1", "--set", "seeds=[1]", "ctr=lr", "baseline={}"]) == 0
    capsys.readouterr()
    suite = load_suite("suite.yaml", ["name=other", "seeds=[1]"])
    store = Store("runs")
    dry = Plan.make(suite, load_plugins(), store, read_only=True)
    assert not dry.adopted and not (Path("runs") / "other").exists()  # read_only copies nothing...
    assert list(dry.reusable.values()) == ["plantest"] and len(dry.todo) == 1  # ...but says what it would reuse
    assert cli.main(["run", "suite.yaml", "--dry-run", "--set", "name=other", "seeds=[1]"]) == 0
    out = capsys.readouterr().out
    assert out.count("reuse ") == 1 and "1 of 2 runs would execute" in out
    assert cli.main(["validate", "suite.yaml", "--set", "name=other", "seeds=[1]"]) == 0
    assert "0 already stored, 1 reusable from other suites" in capsys.readouterr().out
    plan = Plan.make(suite, load_plugins(), store)
    assert list(plan.adopted.values()) == ["plantest"] and len(plan.todo) == 1
    assert plan.adopted.keys() == dry.reusable.keys() and not plan.reusable
    assert plan.status[next(iter(plan.adopted))] == "ok"


def test_needs_run_is_the_stores_rule():
    store = Store("unused")
    for status in ("ok", "failed", "partial", "missing"):
        for rerun in RERUN_POLICIES:
            store.status = lambda spec, status=status: status  # type: ignore[method-assign]
            assert needs_run(status, rerun) == store.needs_run(None, rerun), (status, rerun)  # type: ignore[arg-type]


def test_the_cli_offers_the_stores_rerun_policies():
    assert cli.RERUN_CHOICES == RERUN_POLICIES
