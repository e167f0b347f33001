"""Leaderboards: one generated markdown file per suite, laid out like the paper table the suite mirrors.

The board is a pure function of the suite and the stored runs: rows follow the suite's own order (not the order
the store happens to list runs in), every number is formatted with a fixed precision, and the footer holds values
read from the runs plus what rendered them. Regenerating a board from an unchanged store with the same code
therefore gives the same bytes, so a diff of ``leaderboards/`` shows exactly what changed.

Pieces: `board` arranges the runs and pairs seeds, `significance` tests and marks, `layouts/` holds one module per
``analysis`` (overall/ablation, compat, longtail/headtail, efficiency), `footer` the provenance; figures (SVG)
are drawn by `ctrbench.figures` next to the board and linked from it, and `runs_csv` writes the per-run values
behind it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ctrbench.atomic import atomic_write_bytes
from ctrbench.errors import CtrbenchError
from ctrbench.leaderboard.board import Board, dataset_of, index, seed_of
from ctrbench.leaderboard.cells import has_hidden_rel_impr
from ctrbench.leaderboard.diagnostics import diagnostic_lines
from ctrbench.leaderboard.footer import DIRTY_WARNING, dirty_warning, footer
from ctrbench.leaderboard.formatting import esc
from ctrbench.leaderboard.layouts import Figure, Rendered, layouts
from ctrbench.leaderboard.runs_csv import csv_name, runs_csv
from ctrbench.leaderboard.significance import Comparison, note
from ctrbench.leaderboard.ties import tie_lines
from ctrbench.store import StoredRun
from ctrbench.suite import Suite, expand

__all__ = ["DIRTY_WARNING", "Comparison", "compare_to_baseline", "figure_path", "render_leaderboard",
           "write_leaderboard"]


def compare_to_baseline(suite: Suite, runs: Sequence[StoredRun]) -> list[Comparison]:
    """Every tested config vs its baseline on each dataset (see `ctrbench.leaderboard.significance`)."""
    return index(suite, runs).comparisons()


def figure_path(out_dir: str | Path, suite: Suite, figure: Figure) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", figure.name)
    return Path(out_dir) / f"{suite.name}.{name}.svg"


def _render(board: Board, generated_by: str) -> tuple[str, list[Figure]]:
    suite = board.suite
    lines = [f"# {suite.name}", ""]
    lines += dirty_warning(board)
    lines += diagnostic_lines(board)
    if suite.description:
        lines += [suite.description.strip(), ""]
    origin = f" by `{generated_by}`" if generated_by else " by ctrbench"
    lines += [f"_Generated{origin} from the result store; do not edit by hand._", ""]
    rendered = Rendered([])
    if not board.runs:
        lines += ["No stored runs yet.", ""]
    else:
        rendered = layouts()[suite.analysis](board)
        lines += [*rendered.lines, ""]
        for fig in rendered.figures:
            lines += [f"![{esc(fig.caption)}]({figure_path('.', suite, fig).name})", ""]
    lines += _run_notes(board, suite)
    lines += tie_lines(board)

    notes = ["AUC and Logloss on the test split: mean ± sample standard deviation over seeds (the ± is left out "
             "for a single seed); the best value per dataset is in bold. A cell with fewer usable seeds than the "
             f"suite plans ({len(suite.seeds)}) says so (k/n)."]
    if suite.baseline and suite.analysis in ("overall", "ablation", "compat"):
        notes.append(_rel_impr_note(board))
    notes += rendered.notes
    notes.append(f"Every run's metrics at full precision, with its config, baseline and seed (to recompute the "
                 f"means, paired t-tests and Rel.Impr without the store): [`{csv_name(suite.name)}`]"
                 f"({csv_name(suite.name)}).")
    if board.runs:
        lines += ["---", "", *notes, "", *note(board), "", *footer(board), ""]
    return "\n".join(lines).rstrip("\n") + "\n", rendered.figures


def _rel_impr_note(board: Board) -> str:
    mode = board.suite.rel_impr
    if mode.mode == "proposed_over_row":
        proposed = ", ".join(f"{k}={v}" for k, v in mode.proposed.items())
        text = ("Rel.Impr = (AUC_proposed − AUC_row) / AUC_row (the definition of the papers' Table 2; proposed: "
                f"`{proposed}`), on the mean test AUC over the seeds the two share.")
    else:
        text = ("Rel.Impr = (AUC − AUC_base) / AUC_base, on the mean test AUC over the seeds the config shares with "
                "its baseline row.")
    text += " Changes below 0.005% are printed with two significant digits, so the sign is never lost."
    if has_hidden_rel_impr(board):
        text += (" —‡: not printed, because the reference AUC is at or below 0.5 (no better than random), where a "
                 "relative improvement means nothing.")
    return text


def _run_notes(board: Board, suite: Suite) -> list[str]:
    lines: list[str] = []
    if board.failed:
        n = len(board.failed)
        lines += [f"{n} run{'s' if n != 1 else ''} failed:", ""]
        for r in board.failed:
            err = (r.result.error or "no error message").strip().splitlines()
            first = (err[0] if err else "no error message").replace("`", "'")
            lines.append(f"- {esc(r.spec.config_label())} on {esc(dataset_of(r.spec))} seed {seed_of(r.spec)}: "
                         f"`{first}`")
        lines.append("")
    nonfinite = sum(1 for r in board.runs if r.result.ok and r.spec.config_key() in board.configs
                    and r not in board.all_runs(dataset_of(r.spec), r.spec.config_key()))
    if nonfinite:
        lines += [f"{nonfinite} run{'s' if nonfinite != 1 else ''} finished with a non-finite test AUC and "
                  f"{'are' if nonfinite != 1 else 'is'} left out of every number and test.", ""]
    if board.missing:
        lines += [f"{board.missing} of {len(expand(suite))} runs of this suite are not in the store yet.", ""]
    if board.superseded:
        n = board.superseded
        lines += [f"{n} stored run{'s' if n != 1 else ''} with the same labels as a run of the current suite "
                  f"(an older configuration) {'are' if n != 1 else 'is'} left out.", ""]
    return lines


def render_leaderboard(suite: Suite, runs: Sequence[StoredRun], *, generated_by: str = "") -> str:
    """The suite's leaderboard as GitHub markdown; the same suite, runs and code always give the same string."""
    return _render(index(suite, runs), generated_by)[0]


def write_leaderboard(suite: Suite, runs: Sequence[StoredRun], out_dir: str | Path, *,
                      generated_by: str = "") -> Path:
    """Write ``<out_dir>/<suite.name>.md``, its figures (``<suite.name>.<figure>.svg``) and its per-run values
    (``<suite.name>.runs.csv``) atomically; return the board's path. Paths are checked to lie inside
    ``out_dir``: a suite name cannot write elsewhere."""
    out = Path(out_dir)
    board = index(suite, runs)
    text, figures = _render(board, generated_by)
    path = _inside(out, out / f"{suite.name}.md")
    for fig in figures:
        fig.write(_inside(out, figure_path(out, suite, fig)))
    table = _inside(out, out / csv_name(suite.name))
    if board.runs:
        atomic_write_bytes(table, runs_csv(board).encode("utf-8"))
    else:
        table.unlink(missing_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def _inside(root: Path, path: Path) -> Path:
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved.parent != resolved_root:
        raise CtrbenchError(f"{path}: a board or figure must be written directly inside {root}; "
                            "is the suite name a plain name?")
    return path
