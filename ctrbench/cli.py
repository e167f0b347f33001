"""``ctrbench`` command line: a thin layer over the library API.

Exit codes: 0 everything ran, 1 some runs failed, 2 bad input (suite, plugin, data) — printed as one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from ctrbench.data.commands import add_data_parser, run_data_command
from ctrbench.errors import CtrbenchError, DataError
from ctrbench.plugins import load_plugins
from ctrbench.registry import KINDS
from ctrbench.spec import ComponentRef
from ctrbench.store import RERUN_POLICIES, Store
from ctrbench.suite import Suite, load_suite

EXIT_OK, EXIT_FAILED_RUNS, EXIT_BAD_INPUT = 0, 1, 2
log = logging.getLogger("ctrbench")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ctrbench", description="CTR prediction benchmark: ID models meet PLMs.")
    p.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    sub = p.add_subparsers(dest="command", required=True)

    def suite_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("suite", help="suite YAML file, e.g. suites/quickstart.yaml")
        sp.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override suite values, e.g. --set train.epochs=1 dataset=synthetic")
        sp.add_argument("--store", help="result store root (default: the suite's 'store' or ./runs)")

    run = sub.add_parser("run", help="run what is not stored yet and write the leaderboard")
    suite_args(run)
    run.add_argument("--dry-run", action="store_true", help="show the plan, run nothing")
    run.add_argument("--rerun", choices=RERUN_POLICIES, default="never")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    run.add_argument("--executor", help="executor plugin name (overrides the suite's)")
    run.add_argument("--leaderboards", default="leaderboards", help="directory for the markdown boards")

    val = sub.add_parser("validate", help="check a suite against the installed plugins")
    suite_args(val)

    ls = sub.add_parser("list", help="list registered components")
    ls.add_argument("kind", nargs="?", choices=KINDS, help="datasets | ctr | plm | methods | executors")
    ls.add_argument("pattern", nargs="?", default="*", help="glob, e.g. '*dcn*'")

    sub.add_parser("plugins", help="show every plugin and whether it loaded")

    lb = sub.add_parser("leaderboard", help="regenerate a suite's leaderboard from the store")
    suite_args(lb)
    lb.add_argument("--out", default="leaderboards")

    show = sub.add_parser("show", help="show one stored run")
    show.add_argument("run_id", help="run id or a unique prefix")
    show.add_argument("--store", default="runs")
    add_data_parser(sub)
    return p


def _store_root(args: argparse.Namespace, suite: Suite) -> str:
    return args.store or suite.store or "runs"


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from ctrbench.runner import plan

    suite = load_suite(args.suite, args.overrides)
    specs = plan(suite, load_plugins())
    store = Store(_store_root(args, suite))
    done = sum(1 for s in specs if store.status(s) == "ok")
    console.print(f"{args.suite}: valid — {len(specs)} runs ({done} already stored)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from ctrbench.leaderboard import write_leaderboard
    from ctrbench.progress import RichReporter, SuiteProgress
    from ctrbench.runner import Session, adopt_identical_runs, create_executor, plan, run_suite

    suite = load_suite(args.suite, args.overrides)
    if args.executor:
        suite = dataclasses.replace(suite, executor=ComponentRef(args.executor))
    plugins = load_plugins()
    specs = plan(suite, plugins)
    store = Store(_store_root(args, suite))
    if not args.dry_run:
        adopted = adopt_identical_runs(suite, store, specs, args.rerun)
        if adopted:
            sources = ", ".join(sorted(set(adopted.values())))
            console.print(f"{suite.name}: {len(adopted)} identical runs reused from {sources}")
    todo = [s for s in specs if store.needs_run(s, args.rerun)]
    if args.dry_run:
        for s in specs:
            mark = "run " if s in todo else "done"
            console.print(f"{mark} {s.run_id}  {s.labels.get('dataset')}  {s.config_label()}  seed {s.seed}")
        console.print(f"{len(todo)} of {len(specs)} runs would execute")
        return EXIT_OK
    executor = create_executor(suite, plugins)
    where = "" if suite.executor.name == "local" else f" on executor '{suite.executor.name}'"
    if not todo:
        console.print(f"{suite.name}: all {len(specs)} runs already stored; executing 0 runs")
    else:
        console.print(f"{suite.name}: executing {len(todo)} of {len(specs)} runs ({len(specs) - len(todo)} stored)"
                      f"{where}")
    reporter = RichReporter(console)
    # runs on other machines (executor.remote) resolve --device there: a login node needs no GPU
    session = Session.create(store.root, args.device, args.threads, reporter, plugins,
                             check_device=not getattr(executor, "remote", False))
    progress = SuiteProgress(console, store, todo, session.invocation, title=suite.name, reporter=reporter)

    def on_result(spec, result) -> None:
        progress.finished(spec, result)
        if result.ok:
            m = result.metrics
            console.print(f"  ok     {spec.labels.get('dataset')}  {spec.config_label()}  seed {spec.seed}: "
                          f"AUC {m['test_auc']:.4f}  Logloss {m['test_logloss']:.4f}  ({result.train_seconds:.1f} s)")
        else:
            console.print(f"  FAILED {spec.config_label()} seed {spec.seed} ({spec.run_id}): {result.error}",
                          soft_wrap=True)

    data_error: DataError | None = None
    try:
        with progress:
            outcome = run_suite(suite, session, args.rerun, on_result, executor=executor)
    except DataError as exc:
        data_error, outcome = exc, None
    runs = store.collect(specs)
    if runs:
        path = write_leaderboard(suite, runs, Path(args.leaderboards))
        console.print(f"leaderboard: {path} ({len(runs)} of {len(specs)} runs)")
    if data_error is not None:
        raise data_error
    assert outcome is not None
    if outcome.interrupted:
        console.print(f"interrupted: {outcome.executed} runs finished in this call are stored; run again to resume")
        return 130
    if outcome.failed:
        console.print(f"{len(outcome.failed)} of {outcome.executed} runs failed (see 'ctrbench show RUN_ID')")
        return EXIT_FAILED_RUNS
    return EXIT_OK


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    plugins = load_plugins()
    table = Table("kind", "name", "plugin", "summary", "paper")
    table.columns[1].no_wrap = True
    for kind in [args.kind] if args.kind else list(KINDS):
        for e in plugins.registry(kind).find(args.pattern):
            table.add_row(kind, e.name, e.plugin, e.summary, e.paper)
    console.print(table)
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    plugins = load_plugins()
    table = Table("plugin", "module", "distribution", "status")
    for i in plugins.infos:
        table.add_row(i.name, i.module, f"{i.distribution} {i.version}", i.status)
    console.print(table)
    for i in plugins.failed:  # full error on one unwrapped line each
        console.print(f"plugin '{i.name}' ({i.module}) failed to import: {i.error}", soft_wrap=True)
    return EXIT_OK


def cmd_leaderboard(args: argparse.Namespace, console: Console) -> int:
    from ctrbench.leaderboard import write_leaderboard
    from ctrbench.suite import expand

    suite = load_suite(args.suite, args.overrides)
    specs = expand(suite)
    runs = Store(_store_root(args, suite)).collect(specs)
    if not runs:
        raise CtrbenchError(f"{args.suite}: no stored runs for suite '{suite.name}'; run it first")
    path = write_leaderboard(suite, runs, Path(args.out))
    console.print(f"leaderboard: {path} ({len(runs)} of {len(specs)} runs)")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    run = Store(args.store).find(args.run_id)
    if run is None:
        raise CtrbenchError(f"run '{args.run_id}' not found in store {args.store}")
    console.print_json(json.dumps({"spec": run.spec.to_dict(), "result": run.result.to_dict(),
                                   "provenance": run.provenance()}, default=str))
    return EXIT_OK


COMMANDS = {"run": cmd_run, "data": run_data_command, "validate": cmd_validate, "list": cmd_list,
            "plugins": cmd_plugins, "leaderboard": cmd_leaderboard, "show": cmd_show}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    if not console.is_terminal:  # pipes and CI logs: wide enough that names never wrap
        console = Console(highlight=False, width=200)
    level = logging.INFO if args.verbose else logging.WARNING
    handler = RichHandler(console=Console(stderr=True), show_path=False, level=level)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    try:
        return COMMANDS[args.command](args, console)
    except CtrbenchError as exc:
        print(f"ctrbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
