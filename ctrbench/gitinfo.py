"""The git state of the ctrbench checkout: stamped on every run and on every board.

Its own module, free of torch, so that rendering a board (which needs the rendering commit) stays cheap."""

from __future__ import annotations

import subprocess
from pathlib import Path

import ctrbench


def git_state(cwd: Path | None = None) -> tuple[str, bool]:
    """(commit, dirty) of the ctrbench checkout, or ("unknown", False) outside git. Untracked files and the
    generated boards do not count as dirty: they cannot change what the tracked code computes."""
    cwd = cwd or Path(ctrbench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        # leaderboards/ is output: `ctrbench run A` rewrites leaderboards/A.md, which must not make the runs of a
        # following `ctrbench run B` in the same checkout count as computed by modified code
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     ":(exclude)leaderboards"], cwd=cwd, capture_output=True, text=True,
                                    timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit or "unknown", dirty
