"""``compat``: ClickPrompt's Table 3. One row per CTR backbone; the backbone alone first, then for each PLM the
method columns (ClickPrompt w/o PLM, with PLM), each cell with its Rel.Impr and mark against *that row's* backbone
alone. Rows are the baselines of the suite (``baseline: {method: backbone alone}`` gives one per backbone) and a
config sits on the row of the baseline it is compared with, so the table has no half-empty columns. A heatmap of
the Rel.Impr cells is drawn next to the board."""

from __future__ import annotations

import math
from pathlib import Path

from ctrbench.leaderboard.board import Board
from ctrbench.leaderboard.cells import NO_REL_IMPR, auc_cell, best_keys, logloss_cell, rel_impr_cell
from ctrbench.leaderboard.formatting import DASH, esc, table
from ctrbench.leaderboard.layouts import Figure, Rendered, layout
from ctrbench.suite import ConfigKey


def _row_axes(board: Board) -> list[str]:
    bases = [c for c in board.configs if board.is_baseline(c)]
    return sorted({k for b in bases for k, _ in b if len({dict(x).get(k) for x in bases}) > 1})


def _title(key: ConfigKey, row_axes: list[str]) -> str:
    rest = [(k, v) for k, v in key if k not in row_axes and v != "none"]
    rest.sort(key=lambda kv: (kv[0] != "plm", kv[0]))  # the PLM first: it names the column group
    return " · ".join(v for _, v in rest) or "backbone alone"


@layout("compat")
def compat(board: Board) -> Rendered:
    row_axes = _row_axes(board)
    rows = [c for c in board.configs if board.is_baseline(c)]
    others = [c for c in board.configs if not board.is_baseline(c) and c in board.references]
    cols: list[str] = []
    where: dict[tuple[ConfigKey, str], ConfigKey] = {}
    for key in others:
        title = _title(key, row_axes)
        if title not in cols:
            cols.append(title)
        where[(board.references[key], title)] = key
    base_title = _title(rows[0], row_axes) if rows else "backbone alone"
    header = [" · ".join(row_axes) or "Row", f"{esc(base_title)} (baseline)", *(esc(c) for c in cols)]
    lines: list[str] = []
    figures: list[Figure] = []
    for d in board.datasets:
        lines += [f"### {esc(d)}", ""] if len(board.datasets) > 1 else []
        for title, metric, higher, cell in (("AUC (Rel.Impr vs the row's baseline)", "test_auc", True, auc_cell),
                                             ("Logloss", "test_logloss", False, logloss_cell)):
            best = best_keys(board, d, [*rows, *others], metric, higher)
            body = []
            for r in rows:
                line = [esc(" · ".join(dict(r)[a] for a in row_axes) or board.label(r)), cell(board, d, r, r in best)]
                for c in cols:
                    key = where.get((r, c))
                    text = DASH if key is None else cell(board, d, key, key in best)
                    if key is not None and metric == "test_auc" and board.cell(d, key):
                        text += f" ({rel_impr_cell(board, d, key)})"
                        if len(board.cell(d, key)) < board.planned_seeds:
                            text += f" [{board.seeds_text(d, key)} seeds]"
                    line.append(text)
                body.append(line)
            lines += [f"**{title}**", "", *table(header, body), ""]
        figures += _heatmap(board, d, rows, cols, where, row_axes)
    return Rendered(lines[:-1], figures=figures)


def _heatmap(board: Board, dataset: str, rows: list[ConfigKey], cols: list[str],
             where: dict[tuple[ConfigKey, str], ConfigKey], row_axes: list[str]) -> list[Figure]:
    if not rows or not cols:
        return []
    values: list[list[float]] = []
    texts: list[list[str]] = []
    for r in rows:
        vals, txt = [], []
        for c in cols:
            key = where.get((r, c))
            shown = rel_impr_cell(board, dataset, key) if key is not None and board.cell(dataset, key) else DASH
            value, _ = board.rel_impr(dataset, key) if key is not None else (math.nan, math.nan)
            ok = shown not in (DASH, NO_REL_IMPR)
            comp = board.comparison(dataset, key) if key is not None else None
            vals.append(100 * value if ok else math.nan)
            txt.append(shown + (comp.mark if comp and ok else "") if ok else "")
        values.append(vals)
        texts.append(txt)
    row_names = [" · ".join(dict(r)[a] for a in row_axes) or board.label(r) for r in rows]

    def write(path: Path) -> Path:
        from ctrbench.figures import heatmap_svg

        return heatmap_svg(path, title=f"{board.suite.name}: Rel.Impr over the row's baseline ({dataset})",
                           rows=row_names, cols=cols, values=values, cell_text=texts,
                           colorbar_label="Rel.Impr of test AUC (%)")

    suffix = "relimpr" if len(board.datasets) == 1 else f"relimpr-{dataset}"
    return [Figure(suffix, f"Rel.Impr heatmap on {dataset} (rows: {', '.join(row_axes) or 'config'}; "
                           "marks as in the table)", write)]
