"""Board figures: a heatmap, grouped bars and a line plot, each written as one SVG file next to the markdown boards.

Boards are regenerated and diffed in git, so a figure is a pure function of its inputs, down to the bytes:

* it is drawn on a bare `matplotlib.figure.Figure` with an Agg canvas, never through pyplot, so no global figure
  registry or GUI backend is involved and any process (a worker, a test) can draw;
* it is drawn inside matplotlib's default style, so a user's ``matplotlibrc`` cannot change the output, plus a few
  settings of ours: a fixed ``svg.hashsalt`` (clip-path and pattern ids are otherwise salted with a random uuid)
  and ``svg.fonttype: none`` (text stays text: smaller, searchable, readable in a diff);
* the SVG metadata carries no date.

Every data artist has a ``gid``, which the SVG writer turns into an element id, so a test can find what was drawn
without looking at pixels (`read_svg_ids`):

* heatmap: ``cell-{r}-{c}`` on the annotation of each finite cell (row and column indices);
* grouped bars: ``bar-{series}-{group}`` on each finite bar, ``err-{series}`` on a series' error bars;
* line plot: ``line-{series}`` on each line with a finite point, ``err-{series}`` on its error bars;
* both: ``series-{series}`` on the series' legend entry, there even when the series has no finite value.

``{series}`` and ``{group}`` are `slug` of the name. Names are drawn verbatim (mathtext is off, so a ``$`` in a
model name stays a ``$``). Non-finite values (nan, and inf) are not drawn and get no id.

matplotlib is imported inside the functions: the leaderboard imports this module, and most of its callers never
draw. Settings go through ``rc_context``, which is process-global while it lasts: draw from one thread at a time.
"""

from __future__ import annotations

import io
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrbench.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["grouped_bars_svg", "heatmap_svg", "line_plot_svg", "read_svg_ids", "read_svg_texts", "slug"]

SVG_NS = "{http://www.w3.org/2000/svg}"
# Ours on top of matplotlib's defaults. The salt is arbitrary; it only has to be fixed.
_RC: dict[str, Any] = {
    "svg.hashsalt": "ctrbench",
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
HEATMAP_CMAP = "RdBu"  # red below 0, blue above; colour-blind safe
EMPTY_CELL = "#bdbdbd"  # grey, so an empty cell never looks like a 0 (the near-white centre of the colormap)
_DISALLOWED = re.compile(r"[^A-Za-z0-9_-]+")


# -- names and ids --------------------------------------------------------------------------------------------

def slug(name: str) -> str:
    """``name`` as an id fragment: each run of characters outside ``[A-Za-z0-9_-]`` becomes one ``-``, and the
    ends are trimmed (``"U tail × I tail"`` -> ``"U-tail-I-tail"``). Raises ValueError when nothing is left."""
    s = _DISALLOWED.sub("-", name).strip("-")
    if not s:
        raise ValueError(f"{name!r} has no character usable in an SVG id ([A-Za-z0-9_-])")
    return s


def _slugs(names: Iterable[str], what: str) -> list[str]:
    """Slugs of ``names``; two names with one slug would give two elements one id, so that is an error."""
    out: list[str] = []
    seen: dict[str, str] = {}
    for name in names:
        s = slug(name)
        if s in seen:
            raise ValueError(f"{what} {seen[s]!r} and {name!r} have the same SVG id slug {s!r}; rename one")
        seen[s] = name
        out.append(s)
    return out


def read_svg_ids(path: str | os.PathLike[str]) -> set[str]:
    """Every element id in the SVG at ``path`` (matplotlib's own, like ``axes_1``, included)."""
    return {el.attrib["id"] for el in ET.parse(path).getroot().iter() if "id" in el.attrib}


def read_svg_texts(path: str | os.PathLike[str]) -> list[str]:
    """The content of every ``<text>`` element, in document order: what a reader sees as text (titles, tick
    labels, legend entries, annotations), already XML-unescaped."""
    return ["".join(el.itertext()) for el in ET.parse(path).getroot().iter(f"{SVG_NS}text")]


# -- drawing --------------------------------------------------------------------------------------------------

@contextmanager
def _figure(path: str | os.PathLike[str], figsize: tuple[float, float]) -> Iterator[Figure]:
    """Yield a fresh figure to draw on; on a normal exit save it as SVG to ``path`` (atomically, parents made)."""
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # The figure reads rcParams while it is built and while it is saved, so both happen inside the context.
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        fig = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    atomic_write_bytes(Path(path), buf.getvalue())


def _floats(values: Iterable[float], n: int, what: str) -> list[float]:
    out = [float(v) for v in values]
    if len(out) != n:
        raise ValueError(f"{what} has {len(out)} values, expected {n}")
    return out


def _symmetric_limits(values: Iterable[Iterable[float]]) -> tuple[float, float]:
    """Colour limits ``(-m, m)`` with ``m`` the largest finite ``|value|``, so 0 sits at the colormap's centre
    whatever the sign of the data; ``(-1, 1)`` when no value is finite or all are 0 (a zero-width range would
    make every colour undefined)."""
    m = max((abs(float(v)) for row in values for v in row if math.isfinite(float(v))), default=0.0)
    if m == 0.0:
        m = 1.0
    return -m, m


def _legend(fig: Figure, handles: list[Any], names: Sequence[str], slugs: Sequence[str]) -> None:
    """One legend entry per series, outside the axes on the right, each entry's handle with id ``series-{slug}``."""
    if not handles:
        return
    leg = fig.legend(handles, list(names), loc="outside right upper", frameon=False)
    for text in leg.get_texts():
        text.set_parse_math(False)
    for handle, s in zip(leg.legend_handles, slugs, strict=True):
        handle.set_gid(f"series-{s}")


def _check_errors(errors: Mapping[str, Sequence[float]] | None, series: Mapping[str, Sequence[float]]) -> None:
    unknown = sorted(set(errors or {}) - set(series))
    if unknown:
        raise ValueError(f"errors given for unknown series {unknown}; series are {list(series)}")


def heatmap_svg(
    path: str | os.PathLike[str],
    *,
    title: str,
    rows: Sequence[str],
    cols: Sequence[str],
    values: Sequence[Sequence[float]],
    cell_text: Sequence[Sequence[str]] | None = None,
    colorbar_label: str,
) -> Path:
    """A rows × cols heatmap on a diverging colormap centred at 0 (e.g. Rel.Impr of ClickPrompt over each
    backbone alone, CTR backbone × PLM), each finite cell annotated with ``cell_text[r][c]`` (default: the value
    as ``+0.00``). A nan cell is grey, with no text and no id. Returns ``path``."""
    if not rows or not cols:
        raise ValueError(f"a heatmap needs at least one row and one column, got {len(rows)} × {len(cols)}")
    if len(values) != len(rows):
        raise ValueError(f"values has {len(values)} rows, expected {len(rows)}")
    grid = [_floats(row, len(cols), f"values row {r}") for r, row in enumerate(values)]
    if cell_text is not None:
        if len(cell_text) != len(rows) or any(len(t) != len(cols) for t in cell_text):
            raise ValueError(f"cell_text must be {len(rows)} × {len(cols)}, like values")
    texts = [[cell_text[r][c] if cell_text is not None else f"{v:+.2f}" for c, v in enumerate(row)]
             for r, row in enumerate(grid)]
    vmin, vmax = _symmetric_limits(grid)
    figsize = (2.6 + 1.0 * len(cols), 1.4 + 0.45 * len(rows))

    with _figure(path, figsize) as fig:
        import matplotlib
        import numpy as np

        ax = fig.add_subplot()
        data = np.ma.masked_invalid(np.array(grid, dtype=float))
        cmap = matplotlib.colormaps[HEATMAP_CMAP].with_extremes(bad=EMPTY_CELL)
        mesh = ax.pcolormesh(data, cmap=cmap, vmin=vmin, vmax=vmax, edgecolors="white", linewidth=1.0)
        ax.set_xlim(0, len(cols))
        ax.set_ylim(len(rows), 0)  # first row on top, as in the table
        ax.set_xticks([c + 0.5 for c in range(len(cols))], list(cols), rotation=30, ha="right",
                      rotation_mode="anchor", parse_math=False)
        ax.set_yticks([r + 0.5 for r in range(len(rows))], list(rows), parse_math=False)
        ax.tick_params(length=0)
        for side in ("top", "right", "bottom", "left"):
            ax.spines[side].set_visible(False)
        ax.set_title(title, parse_math=False)
        for r, row in enumerate(grid):
            for c, v in enumerate(row):
                if not math.isfinite(v) or not texts[r][c]:
                    continue
                dark = abs(v) / vmax > 0.6
                ax.text(c + 0.5, r + 0.5, texts[r][c], ha="center", va="center", parse_math=False,
                        color="white" if dark else "black", gid=f"cell-{r}-{c}")
        cbar = fig.colorbar(mesh, ax=ax)
        cbar.set_label(colorbar_label, parse_math=False)
        # matplotlib rasterizes a colorbar of many colours; an embedded PNG would be an opaque blob in a diff.
        cbar.solids.set_rasterized(False)
    return Path(path)


def grouped_bars_svg(
    path: str | os.PathLike[str],
    *,
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    errors: Mapping[str, Sequence[float]] | None = None,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Bars grouped on the x axis (e.g. long-tail buckets), one bar per series in each group (e.g. models), in
    the order given. ``errors[name]`` (e.g. the sample std over seeds) draws error bars; a nan value or error
    omits that bar or error bar. ``ylim`` fixes the y range (bars start at 0, so an AUC board may want
    ``(0.5, 1)``). Returns ``path``."""
    _check_errors(errors, series)
    group_slugs = _slugs(groups, "group")
    names = list(series)
    series_slugs = _slugs(names, "series")
    vals = {n: _floats(series[n], len(groups), f"series {n!r}") for n in names}
    errs = {n: _floats(e, len(groups), f"errors of {n!r}") for n, e in (errors or {}).items()}
    longest = max((len(g) for g in groups), default=0)
    figsize = (max(5.0, 2.5 + len(groups) * (0.3 * max(len(names), 1) + 0.5)), 3.6)

    with _figure(path, figsize) as fig:
        from matplotlib.patches import Patch

        ax = fig.add_subplot()
        width = 0.8 / max(len(names), 1)
        handles = []
        for i, (name, s) in enumerate(zip(names, series_slugs, strict=True)):
            color = f"C{i % 10}"
            xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
            shown = [g for g, v in enumerate(vals[name]) if math.isfinite(v)]
            bars = ax.bar([xs[g] for g in shown], [vals[name][g] for g in shown], width, color=color)
            for rect, g in zip(bars.patches, shown, strict=True):
                rect.set_gid(f"bar-{s}-{group_slugs[g]}")
            if name in errs:
                with_err = [g for g in shown if math.isfinite(errs[name][g])]
                if with_err:
                    eb = ax.errorbar([xs[g] for g in with_err], [vals[name][g] for g in with_err],
                                     yerr=[errs[name][g] for g in with_err], fmt="none", ecolor="black",
                                     elinewidth=0.8, capsize=2)
                    eb.lines[2][0].set_gid(f"err-{s}")
            handles.append(Patch(facecolor=color))
        ax.set_xticks(list(range(len(groups))), list(groups), parse_math=False,
                      **({"rotation": 20, "ha": "right", "rotation_mode": "anchor"} if longest > 12 else {}))
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_ylabel(ylabel, parse_math=False)
        ax.set_title(title, parse_math=False)
        _legend(fig, handles, names, series_slugs)
    return Path(path)


def line_plot_svg(
    path: str | os.PathLike[str],
    *,
    title: str,
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    errors: Mapping[str, Sequence[float]] | None = None,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
) -> Path:
    """One line per series over the shared ``x`` (e.g. AUC against the number of prompts K for each prompt
    mode), with a tick at every x. A nan value breaks the line; ``errors[name]`` draws error bars (a nan error
    omits one). ``logx`` puts x on a log scale (K = 1, 2, 4, ... 1024). Returns ``path``."""
    _check_errors(errors, series)
    xs = [float(v) for v in x]
    if not all(math.isfinite(v) and (v > 0 or not logx) for v in xs):
        raise ValueError(f"x must be finite{' and > 0 for logx' if logx else ''}, got {xs}")
    names = list(series)
    series_slugs = _slugs(names, "series")
    vals = {n: _floats(series[n], len(xs), f"series {n!r}") for n in names}
    errs = {n: _floats(e, len(xs), f"errors of {n!r}") for n, e in (errors or {}).items()}

    with _figure(path, (6.0, 3.6)) as fig:
        from matplotlib.lines import Line2D

        ax = fig.add_subplot()
        if logx:
            ax.set_xscale("log")
        handles = []
        for i, (name, s) in enumerate(zip(names, series_slugs, strict=True)):
            color = f"C{i % 10}"
            ys = vals[name]
            if any(math.isfinite(v) for v in ys):
                (line,) = ax.plot(xs, ys, color=color, marker="o", markersize=4, linewidth=1.5)
                line.set_gid(f"line-{s}")
            err = errs.get(name, [math.nan] * len(xs))
            with_err = [j for j, v in enumerate(ys) if math.isfinite(v) and math.isfinite(err[j])]
            if with_err:
                eb = ax.errorbar([xs[j] for j in with_err], [ys[j] for j in with_err],
                                 yerr=[err[j] for j in with_err], fmt="none", ecolor=color,
                                 elinewidth=0.8, capsize=2)
                eb.lines[2][0].set_gid(f"err-{s}")
            handles.append(Line2D([], [], color=color, marker="o", markersize=4, linewidth=1.5))
        ax.set_xticks(xs, [f"{v:g}" for v in xs])
        ax.minorticks_off()
        ax.set_xlabel(xlabel, parse_math=False)
        ax.set_ylabel(ylabel, parse_math=False)
        ax.set_title(title, parse_math=False)
        _legend(fig, handles, names, series_slugs)
    return Path(path)
