"""``ctrbench`` command line: a thin layer over the library API.

Exit codes (also in ``ctrbench --help``):

- 0: everything asked for was done (all runs ok; ``store check``: nothing wrong, or everything fixed);
- 1: some runs failed, the others are stored (``store check``: problems found and not fixed);
- 2: bad input or environment (a suite, plugin, data file, command-line value, a broken run in the store,
  a full disk, a read-only store), printed as one line;
- 3: internal error (a bug): one line, and the traceback saved under ``<store>/.ctrbench/crashes/``;
- 130: interrupted (Ctrl-C); finished runs are stored.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctrbench.errors import CtrbenchError, DataError, StoreError, UsageError, WriteError

# Everything else is imported inside the commands, where Ctrl-C and import failures are turned into one line,
# and only by the commands that need it: `--help` imports no numpy, `validate` and `list` no torch, scipy or
# transformers (tests/test_cli_imports.py; times in benchmarks/test_cli_startup.py).

EXIT_OK, EXIT_FAILED_RUNS, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = """exit codes:
  0    everything asked for was done
  1    some runs failed (the others are stored); store check: problems found and not fixed
  2    bad input or environment: suite, plugin, data, command-line value, broken stored run, disk full,
       read-only store (one line on stderr)
  3    internal error: one line, the traceback saved under <store>/.ctrbench/crashes/
  130  interrupted (Ctrl-C): finished runs are stored"""
log = logging.getLogger("ctrbench")
RERUN_CHOICES = ("never", "failed", "all")  # ctrbench.store.RERUN_POLICIES, without importing the store (numpy)


def _parser() -> argparse.ArgumentParser:
    from ctrbench.data.commands import add_data_parser
    from ctrbench.registry import KINDS

    p = argparse.ArgumentParser(prog="ctrbench", description="CTR prediction benchmark: ID models meet PLMs.",
                                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    sub = p.add_subparsers(dest="command", required=True)

    def suite_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("suite", help="suite YAML file, e.g. suites/quickstart.yaml")
        sp.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override suite values, e.g. --set train.epochs=1 dataset=synthetic")
        sp.add_argument("--store", help="result store root (default: the suite's 'store' or ./runs)")

    def board_dir_arg(sp: argparse.ArgumentParser) -> None:
        # one spelling per subcommand grew apart (run: --leaderboards, leaderboard: --out); both take both
        sp.add_argument("--leaderboards", "--out", dest="leaderboards", default="leaderboards", metavar="DIR",
                        help="directory for the markdown boards (default ./leaderboards)")

    run = sub.add_parser("run", help="run what is not stored yet and write the leaderboard")
    suite_args(run)
    run.add_argument("--dry-run", action="store_true", help="show the plan, run nothing")
    run.add_argument("--rerun", choices=RERUN_CHOICES, default="never")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    run.add_argument("--threads", type=int, default=1,
                     help="torch CPU threads per run (default 1; parallel one-thread workers beat one process "
                          "with many threads)")
    run.add_argument("--workers", help="worker processes of the local executor: N or auto (default: the suite's "
                                       "executor block, else auto = one per core)")
    run.add_argument("--executor", help="executor plugin name (overrides the suite's)")
    board_dir_arg(run)

    val = sub.add_parser("validate", help="check a suite against the installed plugins")
    suite_args(val)

    ls = sub.add_parser("list", help="list registered components")
    ls.add_argument("kind", nargs="?", choices=KINDS, help=" | ".join(KINDS))
    ls.add_argument("pattern", nargs="?", default="*", help="glob, e.g. '*dcn*'")

    sub.add_parser("plugins", help="show every plugin and whether it loaded")

    lb = sub.add_parser("leaderboard", help="regenerate a suite's leaderboard from the store")
    suite_args(lb)
    board_dir_arg(lb)

    show = sub.add_parser("show", help="show one stored run")
    show.add_argument("run_id", help="run id or a unique prefix")
    show.add_argument("--store", default="runs")

    store = sub.add_parser("store", help="inspect and repair the result store")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    check = store_sub.add_parser("check", help="list partial, orphaned, unreadable and inconsistent run folders; "
                                               "--fix moves them to <suite>/_quarantine/ (never deletes)")
    check.add_argument("--store", default="runs", help="result store root (default ./runs)")
    check.add_argument("--suite", action="append", default=[], metavar="NAME", help="only this suite (repeatable)")
    check.add_argument("--fix", action="store_true", help="move what is found to <suite>/_quarantine/, so the "
                                                          "next run computes those runs again")
    add_data_parser(sub)
    return p


def load_plugins() -> Any:
    """The installed plugins (``ctrbench.plugins.load_plugins``), imported when a command needs them."""
    from ctrbench.plugins import load_plugins as load

    return load()


def _store_root(args: argparse.Namespace, suite: Any) -> str:
    return args.store or suite.store or "runs"


def _workers(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise UsageError(f"--workers must be a whole number of at least 1 or 'auto', got {value!r}")
    return workers


def cmd_validate(args: argparse.Namespace, console: Any) -> int:
    from ctrbench.plan import Plan
    from ctrbench.store import Store
    from ctrbench.suite import load_suite

    suite = load_suite(args.suite, args.overrides)
    plan = Plan.make(suite, load_plugins(), Store(_store_root(args, suite)), read_only=True, deep=True)
    reusable = f", {len(plan.reusable)} reusable from other suites" if plan.reusable else ""
    console.print(f"{args.suite}: valid — {len(plan.specs)} runs ({plan.count('ok')} already stored{reusable})")
    return EXIT_OK


def _configured_suite(args: argparse.Namespace, workers: int | str | None) -> Any:
    """The suite with ``--executor`` and ``--workers`` applied."""
    from ctrbench.spec import ComponentRef
    from ctrbench.suite import load_suite

    suite = load_suite(args.suite, args.overrides)
    if args.executor:
        suite = suite.with_executor(ComponentRef(args.executor))
    if workers is not None:
        if suite.executor.name != "local":
            raise UsageError(f"--workers sets the worker processes of the local executor; executor "
                             f"'{suite.executor.name}' takes its settings from the suite's executor block")
        suite = suite.with_executor(ComponentRef("local", {**suite.executor.config, "workers": workers}))
    return suite


def cmd_run(args: argparse.Namespace, console: Any) -> int:
    from ctrbench.plan import Plan, check_device_name, check_threads
    from ctrbench.store import Store

    check_threads(args.threads)
    check_device_name(args.device)
    suite = _configured_suite(args, _workers(args.workers))
    plugins = load_plugins()
    store = Store(_store_root(args, suite))
    plan = Plan.make(suite, plugins, store, args.rerun, read_only=args.dry_run)
    specs, todo = plan.specs, plan.todo
    if plan.adopted:
        sources = ", ".join(sorted(set(plan.adopted.values())))
        console.print(f"{suite.name}: {len(plan.adopted)} identical runs reused from {sources}")
    if args.dry_run:
        todo_ids = {s.run_id for s in todo}
        for s in specs:
            mark = "run " if s.run_id in todo_ids else "reuse" if s.run_id in plan.reusable else "done"
            console.print(f"{mark} {s.run_id}  {s.labels.get('dataset')}  {s.config_label()}  seed {s.seed}")
        console.print(f"{len(todo)} of {len(specs)} runs would execute")
        return EXIT_OK

    # torch from here on
    from ctrbench.leaderboard import write_leaderboard
    from ctrbench.progress import RichReporter, SuiteProgress
    from ctrbench.protocols import runs_elsewhere
    from ctrbench.runner import Session, create_executor, run_suite

    executor = create_executor(suite, plugins)
    where = "" if suite.executor.name == "local" else f" on executor '{suite.executor.name}'"
    if not todo:
        console.print(f"{suite.name}: all {len(specs)} runs already stored; executing 0 runs")
    else:
        held = f"; {len(plan.claimed)} held by another process, waited for" if plan.claimed else ""
        console.print(f"{suite.name}: executing {len(todo)} of {len(specs)} runs ({len(specs) - len(todo)} stored"
                      f"{held}){where}")
    reporter = RichReporter(console)
    # runs on other machines (executor.remote) resolve --device there: a login node needs no GPU
    session = Session.create(store.root, args.device, args.threads, reporter, plugins,
                             check_device=not runs_elsewhere(executor))
    progress = SuiteProgress(console, store, list(todo), session.invocation, title=suite.name, reporter=reporter)

    def on_claimed(spec, message: str) -> None:
        console.print(f"  waiting {spec.config_label()} seed {spec.seed}: {message}", soft_wrap=True)

    def on_result(spec, result) -> None:
        progress.finished(spec, result)
        if result.ok:
            m = result.metrics
            console.print(f"  ok     {spec.labels.get('dataset')}  {spec.config_label()}  seed {spec.seed}: "
                          f"AUC {m['test_auc']:.4f}  Logloss {m['test_logloss']:.4f}  ({result.train_seconds:.1f} s)")
        else:
            console.print(f"  FAILED {spec.config_label()} seed {spec.seed} ({spec.run_id}): {result.error}",
                          soft_wrap=True)

    stopped: CtrbenchError | None = None
    try:
        with progress:
            outcome = run_suite(plan, session, on_result=on_result, executor=executor, on_claimed=on_claimed)
    except (DataError, WriteError, StoreError) as exc:  # every later run would fail the same way: stop
        stopped, outcome = exc, None
    try:
        runs = store.collect(list(specs))
        if runs:
            path = write_leaderboard(suite, runs, Path(args.leaderboards))
            console.print(f"leaderboard: {path} ({len(runs)} of {len(specs)} runs)")
    except CtrbenchError:
        if stopped is None:
            raise
    if stopped is not None:
        raise stopped
    assert outcome is not None
    if outcome.elsewhere:
        console.print(f"{len(outcome.elsewhere)} runs were computed by another process while this one ran")
    if outcome.interrupted:
        console.print(f"interrupted: {outcome.executed} runs finished in this call are stored; run again to resume")
        return EXIT_INTERRUPTED
    if outcome.failed:
        console.print(f"{len(outcome.failed)} of {outcome.executed} runs failed (see 'ctrbench show RUN_ID')")
        return EXIT_FAILED_RUNS
    return EXIT_OK


def cmd_list(args: argparse.Namespace, console: Any) -> int:
    from rich.table import Table

    from ctrbench.registry import KINDS

    plugins = load_plugins()
    table = Table("kind", "name", "plugin", "summary", "paper")
    table.columns[1].no_wrap = True
    for kind in [args.kind] if args.kind else list(KINDS):
        for e in plugins.registry(kind).find(args.pattern):
            table.add_row(kind, e.name, e.plugin, e.summary, e.paper)
    console.print(table)
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace, console: Any) -> int:
    from rich.table import Table


    plugins = load_plugins()
    table = Table("plugin", "module", "distribution", "status")
    for i in plugins.infos:
        table.add_row(i.name, i.module, f"{i.distribution} {i.version}", i.status)
    console.print(table)
    for i in plugins.failed:  # full error on one unwrapped line each
        console.print(f"plugin '{i.name}' ({i.module}) failed to import: {i.error}", soft_wrap=True)
    return EXIT_OK


def cmd_leaderboard(args: argparse.Namespace, console: Any) -> int:
    from ctrbench.leaderboard import write_leaderboard
    from ctrbench.store import Store
    from ctrbench.suite import expand, load_suite

    suite = load_suite(args.suite, args.overrides)
    specs = expand(suite)
    runs = Store(_store_root(args, suite)).collect(specs)
    if not runs:
        raise CtrbenchError(f"{args.suite}: no stored runs for suite '{suite.name}'; run it first")
    path = write_leaderboard(suite, runs, Path(args.leaderboards))
    console.print(f"leaderboard: {path} ({len(runs)} of {len(specs)} runs)")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, console: Any) -> int:
    from ctrbench.store import Store

    run = Store(args.store).find(args.run_id)
    if run is None:
        raise CtrbenchError(f"run '{args.run_id}' not found in store {args.store}")
    console.print_json(json.dumps({"spec": run.spec.to_dict(), "result": run.result.to_dict(),
                                   "provenance": run.provenance()}, default=str))
    return EXIT_OK


def cmd_store(args: argparse.Namespace, console: Any) -> int:
    """``ctrbench store check [--fix]``."""
    from ctrbench.store import Store

    store = Store(args.store)
    if not store.root.is_dir():
        raise UsageError(f"{args.store}: no such store folder")
    suites = args.suite or None
    problems = store.check(suites)
    where = f"{store.root}" + (f" (suites {', '.join(suites)})" if suites else "")
    if not problems:
        console.print(f"{where}: no partial, orphaned, unreadable or inconsistent runs")
        return EXIT_OK
    for p in problems:
        console.print(p.line(), soft_wrap=True)
    if not args.fix:
        console.print(f"{len(problems)} problems in {where}; `ctrbench store check --store {args.store} --fix` "
                      "moves them to <suite>/_quarantine/ (nothing is deleted), so the next run computes them again",
                      soft_wrap=True)
        return EXIT_FAILED_RUNS
    for p, dest, note in store.fix(problems):
        console.print(f"  {note}: {p.path}" + (f" -> {dest}" if dest else ""), soft_wrap=True)
    left = store.check(suites)
    if left:
        console.print(f"{len(left)} problems left (runs being computed right now are left alone)")
        return EXIT_FAILED_RUNS
    console.print(f"{where}: fixed; the next `ctrbench run` computes the moved runs again")
    return EXIT_OK


def run_data_command(args: argparse.Namespace, console: Any) -> int:
    from ctrbench.data.commands import run_data_command as run

    return run(args, console)


COMMANDS = {"run": cmd_run, "data": run_data_command, "validate": cmd_validate, "list": cmd_list,
            "plugins": cmd_plugins, "leaderboard": cmd_leaderboard, "show": cmd_show, "store": cmd_store}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.split("\n")[0].split()) if text else type(exc).__name__


def _importing(exc: BaseException) -> str | None:
    """The file being imported when ``exc`` was raised (the innermost module body on its traceback)."""
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_name == "<module>":
            found = frame.f_code.co_filename
    return found


def _save_traceback(args: argparse.Namespace | None, exc: BaseException) -> Path | None:
    """Write the traceback under ``<store>/.ctrbench/crashes/`` (else the temp folder); its path."""
    import tempfile

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = f"ctrbench {' '.join(sys.argv[1:])}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n{text}"
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
    store = getattr(args, "store", None) or "runs"
    for folder in (Path(store) / ".ctrbench" / "crashes", Path(tempfile.gettempdir()) / "ctrbench-crashes"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            return folder / name
        except OSError:
            continue
    return None


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (``kill``, a SLURM time limit, a container stop) takes the Ctrl-C path: the executor stops its
    worker processes and finished runs stay stored. Left at its default, SIGTERM kills only this process and
    its pool workers live on as orphans, computing runs nobody collects."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    args: argparse.Namespace | None = None
    try:
        args = _parser().parse_args(argv)
        from rich.console import Console
        from rich.logging import RichHandler

        console = Console(highlight=False)
        if not console.is_terminal:  # pipes and CI logs: wide enough that names never wrap
            console = Console(highlight=False, width=200)
        level = logging.INFO if args.verbose else logging.WARNING
        handler = RichHandler(console=Console(stderr=True), show_path=False, level=level)
        logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
        return COMMANDS[args.command](args, console)
    except CtrbenchError as exc:
        print(f"ctrbench: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("ctrbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        culprit = _importing(exc)
        if culprit is None:  # argparse (--help, a usage error), or a deliberate exit
            raise
        from ctrbench.plugins import DISABLE_ENV

        print(f"ctrbench: error: {culprit} called sys.exit({exc.code!r}) while being imported (a plugin or a module "
              f"it imports); disable that plugin with {DISABLE_ENV}=<name> (see `ctrbench plugins`)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        from ctrbench.atomic import write_error

        err = write_error(exc.filename or "?", exc) if exc.filename else None
        if err is None:
            return _internal_error(args, exc)
        print(f"ctrbench: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        return _internal_error(args, exc)


def _internal_error(args: argparse.Namespace | None, exc: BaseException) -> int:
    path = _save_traceback(args, exc)
    saved = f"traceback saved to {path}" if path else "the traceback could not be saved"
    print(f"ctrbench: internal error: {type(exc).__name__}: {_one_line(exc)} ({saved}; please report it)",
          file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
