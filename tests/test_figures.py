"""Board figures: the ids and texts each SVG must carry, nan handling, colour limits, byte-identical output,
atomic writes, and that drawing leaves matplotlib's global state (rcParams, pyplot) alone."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ctrbench.figures import (
    _symmetric_limits,
    grouped_bars_svg,
    heatmap_svg,
    line_plot_svg,
    read_svg_ids,
    read_svg_texts,
    slug,
)

NAN = math.nan
OUR_PREFIXES = ("cell-", "series-", "bar-", "line-", "err-")

HEATMAP = dict(
    title="Rel.Impr of ClickPrompt over each backbone alone",
    rows=["DNN", "DeepFM", "DCNv2"],
    cols=["TinyBERT", "RoBERTa-base"],
    values=[[1.25, -0.5], [NAN, 2.0], [0.0, -3.0]],
    colorbar_label="Rel.Impr (%)",
)
BARS = dict(
    title="Long tail",
    groups=["U tail × I tail", "U head × I head"],
    series={"DNN": [0.70, NAN], "ClickPrompt (DNN)": [0.72, 0.76]},
    errors={"DNN": [0.01, 0.02], "ClickPrompt (DNN)": [NAN, 0.005]},
    ylabel="AUC",
)
CELL_TEXT = [["+1.25%", "-0.50%"], ["nan!", "+2.00%"], ["0", "-3.00%"]]
LINES = dict(
    title="AUC vs number of prompts",
    x=[1, 2, 4, 8],
    series={"hard prompt": [0.70, 0.71, NAN, 0.73], "soft prompt": [0.69, 0.70, 0.72, 0.72]},
    errors={"soft prompt": [0.01, NAN, 0.01, 0.01]},
    xlabel="K",
    ylabel="AUC",
)


@pytest.fixture(scope="module")
def figs(tmp_path_factory) -> dict[str, Path]:
    """The three standard figures, drawn once for the module (a draw takes about half a second)."""
    d = tmp_path_factory.mktemp("figs")
    return {
        "heatmap": heatmap_svg(d / "h.svg", **HEATMAP, cell_text=CELL_TEXT),
        "bars": grouped_bars_svg(d / "b.svg", **BARS),
        "lines": line_plot_svg(d / "l.svg", **LINES),
    }


def ours(path: Path) -> set[str]:
    return {i for i in read_svg_ids(path) if i.startswith(OUR_PREFIXES)}


def all_ids(path: Path) -> list[str]:
    return [el.attrib["id"] for el in ET.parse(path).getroot().iter() if "id" in el.attrib]


# -- ids and texts ---------------------------------------------------------------------------------------------

def test_slug():
    assert slug("U tail × I tail") == "U-tail-I-tail"
    assert slug("N/A (backbone alone)") == "N-A-backbone-alone"
    assert slug("deep_fm-v2") == "deep_fm-v2"
    with pytest.raises(ValueError, match="no character"):
        slug("× ×")


def test_heatmap_ids_and_texts(figs):
    out = figs["heatmap"]
    # every finite cell, and not the nan one (row 1, column 0)
    assert ours(out) == {"cell-0-0", "cell-0-1", "cell-1-1", "cell-2-0", "cell-2-1"}
    ids = all_ids(out)
    assert len(ids) == len(set(ids)), "duplicate ids"
    texts = read_svg_texts(out)
    for t in [HEATMAP["title"], *HEATMAP["rows"], *HEATMAP["cols"], HEATMAP["colorbar_label"],
              "+1.25%", "-0.50%", "+2.00%", "0", "-3.00%"]:
        assert t in texts
    assert "nan!" not in texts


def test_heatmap_default_cell_text(tmp_path):
    texts = read_svg_texts(heatmap_svg(tmp_path / "h.svg", **HEATMAP))
    assert {"+1.25", "-0.50", "+2.00", "+0.00", "-3.00"} <= set(texts)


def test_heatmap_all_nan(tmp_path):
    out = heatmap_svg(tmp_path / "h.svg", **{**HEATMAP, "values": [[NAN, NAN]] * 3})
    assert ours(out) == set()
    assert set(HEATMAP["rows"]) <= set(read_svg_texts(out))


def test_symmetric_limits():
    assert _symmetric_limits([[1.0, -3.0], [NAN, 2.0]]) == (-3.0, 3.0)
    assert _symmetric_limits([[0.5, 2.0]]) == (-2.0, 2.0)  # symmetric even when every value is positive
    assert _symmetric_limits([[math.inf, -0.25]]) == (-0.25, 0.25)
    assert _symmetric_limits([[NAN, NAN]]) == (-1.0, 1.0)
    assert _symmetric_limits([[0.0, -0.0]]) == (-1.0, 1.0)
    assert _symmetric_limits([]) == (-1.0, 1.0)


def test_grouped_bars_ids_and_texts(figs):
    out = figs["bars"]
    assert ours(out) == {
        "series-DNN", "series-ClickPrompt-DNN",
        # DNN's head/head bar is nan: no bar, and no error bar either
        "bar-DNN-U-tail-I-tail", "bar-ClickPrompt-DNN-U-tail-I-tail", "bar-ClickPrompt-DNN-U-head-I-head",
        "err-DNN", "err-ClickPrompt-DNN",
    }
    ids = all_ids(out)
    assert len(ids) == len(set(ids)), "duplicate ids"
    texts = read_svg_texts(out)
    for t in [BARS["title"], BARS["ylabel"], *BARS["groups"], *BARS["series"]]:
        assert t in texts


def test_grouped_bars_nan_series_and_no_errors(tmp_path):
    out = grouped_bars_svg(tmp_path / "b.svg", **{**BARS, "errors": None,
                                                  "series": {"DNN": [NAN, NAN], "TinyBERT": [0.6, 0.7]}})
    # a series with no value still has its legend entry, and its name is still shown
    assert ours(out) == {"series-DNN", "series-TinyBERT", "bar-TinyBERT-U-tail-I-tail", "bar-TinyBERT-U-head-I-head"}
    assert "DNN" in read_svg_texts(out)


def test_line_plot_ids_and_texts(figs):
    out = figs["lines"]
    assert ours(out) == {"series-hard-prompt", "series-soft-prompt", "line-hard-prompt", "line-soft-prompt",
                         "err-soft-prompt"}
    ids = all_ids(out)
    assert len(ids) == len(set(ids)), "duplicate ids"
    texts = read_svg_texts(out)
    for t in [LINES["title"], LINES["xlabel"], LINES["ylabel"], *LINES["series"], "1", "2", "4", "8"]:
        assert t in texts


def test_line_plot_all_nan_series_and_logx(tmp_path):
    out = line_plot_svg(tmp_path / "l.svg", **{**LINES, "x": [1, 16, 1024], "errors": None, "logx": True,
                                               "series": {"hard": [NAN] * 3, "soft": [0.7, 0.71, 0.72]}})
    assert ours(out) == {"series-hard", "series-soft", "line-soft"}
    assert {"1", "16", "1024"} <= set(read_svg_texts(out))
    with pytest.raises(ValueError, match="> 0"):
        line_plot_svg(tmp_path / "bad.svg", **{**LINES, "x": [0, 1, 2, 3], "logx": True})


def test_names_are_drawn_verbatim(tmp_path):
    """A ``$`` would otherwise start mathtext and the name would be drawn as math, not as itself."""
    out = line_plot_svg(tmp_path / "l.svg", **{**LINES, "title": "cost in $ (and $x$)", "errors": None,
                                               "series": {"a$b$c": [1, 2, 3, 4], "x<&>y": [2, 3, 4, 5]}})
    texts = read_svg_texts(out)
    assert "cost in $ (and $x$)" in texts
    assert {"a$b$c", "x<&>y"} <= set(texts)
    assert ours(out) >= {"series-a-b-c", "line-a-b-c"}


def test_bad_input_is_rejected_before_writing(tmp_path):
    cases = [
        (heatmap_svg, {**HEATMAP, "values": [[1.0, 2.0]] * 2}),  # 2 rows of values, 3 row names
        (heatmap_svg, {**HEATMAP, "values": [[1.0]] * 3}),
        (heatmap_svg, {**HEATMAP, "cell_text": [["a", "b"]]}),
        (heatmap_svg, {**HEATMAP, "rows": [], "values": []}),
        (grouped_bars_svg, {**BARS, "series": {"DNN": [0.7]}, "errors": None}),
        (grouped_bars_svg, {**BARS, "errors": {"nobody": [0.1, 0.1]}}),
        (grouped_bars_svg, {**BARS, "series": {"a b": [1, 2], "a/b": [1, 2]}, "errors": None}),  # one slug
        (line_plot_svg, {**LINES, "errors": {"soft prompt": [0.1]}}),
    ]
    for fn, kwargs in cases:
        with pytest.raises(ValueError):
            fn(tmp_path / "x.svg", **kwargs)
    assert list(tmp_path.iterdir()) == []


# -- bytes ---------------------------------------------------------------------------------------------------

def test_same_inputs_same_bytes(figs, tmp_path):
    again = {
        "heatmap": heatmap_svg(tmp_path / "h.svg", **HEATMAP, cell_text=CELL_TEXT),
        "bars": grouped_bars_svg(tmp_path / "b.svg", **BARS),
        "lines": line_plot_svg(tmp_path / "l.svg", **LINES),
    }
    for kind, path in again.items():
        assert path.read_bytes() == figs[kind].read_bytes(), kind
        assert b"<dc:date>" not in path.read_bytes()  # no date in the metadata


def test_bytes_ignore_user_rcparams_and_leave_them_alone(figs, tmp_path):
    import matplotlib

    with matplotlib.rc_context({"font.size": 20, "axes.prop_cycle": matplotlib.cycler(color=["k"]),
                                "svg.fonttype": "path", "svg.hashsalt": None}):
        before = dict(matplotlib.rcParams)
        styled = grouped_bars_svg(tmp_path / "styled.svg", **BARS).read_bytes()
        assert dict(matplotlib.rcParams) == before
    assert styled == figs["bars"].read_bytes()


def test_fresh_process_same_bytes_lazy_import_no_pyplot(figs, tmp_path):
    """Another interpreter (another hash seed) writes the same bytes; importing the module loads no matplotlib,
    and drawing never loads pyplot."""
    code = f"""
import math, sys
from pathlib import Path
import ctrbench.figures as f
assert "matplotlib" not in sys.modules, "matplotlib imported at module import"
nan = math.nan
f.heatmap_svg(Path({str(tmp_path / "there.svg")!r}), **{HEATMAP!r}, cell_text={CELL_TEXT!r})
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
"""
    env = {**os.environ, "PYTHONHASHSEED": "12345", "MPLBACKEND": "svg"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert (tmp_path / "there.svg").read_bytes() == figs["heatmap"].read_bytes()


def test_atomic_write_makes_parents_and_leaves_no_temp_file(figs, tmp_path):
    target = tmp_path / "boards" / "figs" / "l.svg"
    assert line_plot_svg(target, **LINES) == target
    assert [p.name for p in target.parent.iterdir()] == ["l.svg"]
    target.write_bytes(b"old")
    line_plot_svg(str(target), **LINES)  # replaces an existing file; a str path works too
    assert [p.name for p in target.parent.iterdir()] == ["l.svg"]
    assert target.read_bytes() == figs["lines"].read_bytes()


def test_failed_draw_leaves_old_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    target = tmp_path / "h.svg"
    target.write_bytes(b"old")

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        heatmap_svg(target, **HEATMAP)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["h.svg"]
