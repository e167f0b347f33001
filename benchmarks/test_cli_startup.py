"""Start-up time of the CLI: ``ctrbench --help``, ``ctrbench validate suites/compat.yaml`` and ``ctrbench list``,
each a fresh ``python -m ctrbench.cli`` process, against ``python -c pass`` (the interpreter's own start-up) on the
same machine in the same run. One round runs the four commands back to back, so load on the machine hits them
alike; reported per command: the median wall time over the rounds, its ratio to ``python -c pass``, and the time
above it (what ctrbench itself adds). ``validate`` reads an empty store (a temporary ``--store``), so the figure is
start-up and planning, not reading stored runs.

The targets (issue 14: ``--help`` under 0.5 s, ``validate`` under 3 s on the 2-core machine) are printed next to
the numbers, not asserted: a busy machine moves them. What keeps them low (no torch, transformers, scipy or pandas
in these commands; no numpy in ``--help``) is asserted by ``tests/test_cli_imports.py``.
Rounds: ``--bench-rounds`` (at least 5), after ``--bench-warmup`` untimed ones (at least 1: a cold disk cache).

    CTRBENCH_BENCH_NO_GIT=1 python -m pytest benchmarks/test_cli_startup.py -p no:cacheprovider -s
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"--help": 0.5, "validate": 3.0}  # seconds, issue 14


def _commands(store: Path) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "ctrbench.cli"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "--help": [*cli, "--help"],
        "validate": [*cli, "validate", "suites/compat.yaml", "--store", str(store)],
        "list": [*cli, "list"],
    }


def _seconds(argv: list[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - t
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr[-1000:]}"
    return elapsed


def test_cli_startup(benchmark, bench, tmp_path):
    commands = _commands(tmp_path / "runs")
    times: dict[str, list[float]] = {name: [] for name in commands}
    rounds, warmup = max(bench.rounds, 5), max(bench.warmup, 1)

    def one_round() -> None:
        for name, argv in commands.items():
            times[name].append(_seconds(argv))

    benchmark.group = "cli startup"
    benchmark.pedantic(one_round, rounds=rounds, warmup_rounds=warmup, iterations=1)
    medians = {name: statistics.median(t[warmup:] or t) for name, t in times.items()}
    base = medians["python -c pass"]
    rows = {}
    for name, median in medians.items():
        rows[name] = {"median_s": round(median, 3), "ratio_to_python": round(median / base, 2),
                      "above_python_s": round(median - base, 3), "target_s": TARGETS.get(name)}
    benchmark.extra_info.update({"cli_startup": rows, "rounds": rounds, "cpu_count": os.cpu_count(),
                                 "loadavg": [round(x, 2) for x in os.getloadavg()]})
    print()
    for name, row in rows.items():
        target = f"  (target < {row['target_s']} s)" if row["target_s"] else ""
        print(f"{name:16s} {row['median_s']:6.3f} s  {row['ratio_to_python']:5.2f}x python -c pass  "
              f"+{row['above_python_s']:.3f} s{target}")
