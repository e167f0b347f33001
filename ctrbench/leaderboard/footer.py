"""The provenance footer and the dirty-tree warning: what a reviewer needs to check where a board came from.

Values come from the runs' stored provenance, plus what the rendering itself depends on (the rendering commit, the
scipy version behind the tests, the sha256 of the suite file), so a board can be traced to code, data and
statistics."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ctrbench.leaderboard.board import Board
from ctrbench.leaderboard.formatting import esc, prose_duration

DIRTY_WARNING = "⚠ Not from a clean commit"


def dirty_warning(board: Board) -> list[str]:
    """A visible line at the top of a board whose runs came from a working tree with uncommitted changes: such
    runs cannot be reproduced from any commit, so the board must be re-run before it is cited or committed."""
    provs = [r.provenance() for r in board.runs]
    dirty = sum(1 for p in provs if p.get("git_dirty"))
    if not dirty:
        return []
    return [f"> **{DIRTY_WARNING}:** {dirty} of {len(provs)} runs were computed from a working tree with "
            "uncommitted changes (`+dirty` below); re-run them from a clean commit before citing this board.", ""]


def _distinct(values: Iterable[Any]) -> list[str]:
    return sorted({str(v) for v in values if v not in (None, "")})


def _date(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), tz=timezone.utc).date().isoformat()
    try:
        return datetime.fromisoformat(str(value)).date().isoformat()
    except ValueError:
        return str(value)[:10]


def _dataset_line(name: str, fingerprint: str, splits: dict[str, Any], train_used: Any) -> str:
    parts = [f"`{esc(name)}`"]
    if fingerprint:
        parts.append(f"fingerprint `{fingerprint}`")
    sizes = " · ".join(f"{k} {int(splits[k]):,}" for k in ("train", "valid", "test") if k in splits)
    if sizes:
        parts.append(sizes)
    line = ", ".join(parts)
    if isinstance(train_used, (int, float)) and "train" in splits and train_used < splits["train"]:
        line += f" (train subsampled to {int(train_used):,} rows)"
    return line


def commit_text(commit: str, dirty: bool) -> str:
    short = commit if commit == "unknown" else commit[:7]
    return short + ("+dirty" if dirty else "")


def _plugin_text(value: Any) -> str:
    """A plugin origin ``{"name", "plugin", "distribution"}`` as ``plugin (distribution version)``."""
    if isinstance(value, dict):
        plugin, dist = value.get("plugin"), value.get("distribution")
        if plugin and dist:
            return f"{plugin} ({dist})"
        return str(plugin or dist or value.get("name") or "")
    return str(value)


def suite_sha256(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "unavailable (the suite file could not be read)"


def rendering_stamp() -> str:
    """The commit and scipy version of the code rendering the board (the statistics are computed now, not stored)."""
    import scipy

    from ctrbench.gitinfo import git_state

    commit, dirty = git_state()
    return f"commit `{commit_text(commit, dirty)}` · scipy {scipy.__version__}"


def footer(board: Board) -> list[str]:
    provs = [(r, r.provenance()) for r in board.runs]
    datasets: set[tuple[str, str, tuple[tuple[str, int], ...], Any]] = set()
    for _, p in provs:
        d = p.get("dataset") or {}
        if d:
            splits = tuple(sorted((str(k), int(v)) for k, v in (d.get("splits") or {}).items()))
            datasets.add((str(d.get("name", "")), str(d.get("fingerprint") or ""), splits, d.get("train_used")))
    lines = ["## Provenance", "", "Ran on:", ""]
    names = [d[0] for d in datasets]
    for name, fp, splits, used in sorted(datasets, key=lambda x: (x[0], x[1], x[2], str(x[3]))):
        warn = " — ⚠ this dataset has several fingerprints: the runs did not all see the same data" \
            if names.count(name) > 1 and len({x[1] for x in datasets if x[0] == name}) > 1 else ""
        lines.append(f"- Dataset {_dataset_line(name, fp, dict(splits), used)}{warn}")
    scored = sorted({int((p.get("dataset") or {}).get("test_scored", 0)) for _, p in provs} - {0})
    test_sizes = {int((p.get("dataset") or {}).get("splits", {}).get("test", 0)) for _, p in provs}
    if scored and max(scored) < max(test_sizes, default=0):
        lines.append(f"- Scored on a fixed random subset of {', '.join(f'{n:,}' for n in scored)} test rows "
                     "(`train.eval_max_samples`, the same rows for every run, so paired tests stay paired)")
    plms = _distinct(p.get("plm") for _, p in provs)
    lines.append(f"- PLMs: {', '.join(plms) if plms else 'none'}")
    devices = _distinct(p.get("device") for _, p in provs)
    if devices:
        lines.append(f"- Devices: {', '.join(devices)}")
    versions = []
    for pkg in ("ctrbench", "torch", "python", "numpy", "transformers"):
        vals = _distinct(p.get(pkg) for _, p in provs)
        if vals:
            versions.append(f"{pkg} {', '.join(vals)}")
    if versions:
        lines.append(f"- Versions: {' · '.join(versions)}")
    commits = _distinct(commit_text(str(p["git_commit"]), bool(p.get("git_dirty"))) for _, p in provs
                        if p.get("git_commit"))
    if commits:
        lines.append(f"- Git commits of the runs: {', '.join(f'`{c}`' for c in commits)}")
    plugins = _distinct(_plugin_text(v) for _, p in provs for v in (p.get("plugins") or {}).values())
    if plugins:
        lines.append(f"- Plugins: {', '.join(plugins)}")
    seeds = sorted({r.spec.seed for r in board.runs})
    lines.append(f"- Seeds: {', '.join(str(s) for s in seeds)} (planned: {len(board.suite.seeds)})")
    n_ok = sum(1 for r in board.runs if r.result.ok)
    lines.append(f"- Runs: {len(board.runs)} ({n_ok} ok, {len(board.runs) - n_ok} failed)")
    wall = math.fsum(float(p.get("wall_seconds") or 0.0) for _, p in provs)
    lines.append(f"- Total wall time: {prose_duration(wall)} (sum over runs)")
    dates = [d for d in (_date(p.get("started_at")) for _, p in provs) if d]
    if dates:
        lines.append(f"- Latest run: {max(dates)}")
    lines.append(f"- Suite file: `{esc(board.suite.path)}`, sha256 `{suite_sha256(board.suite.path)}`")
    lines.append(f"- Rendered by ctrbench at {rendering_stamp()}")
    return lines
