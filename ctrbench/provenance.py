"""Provenance: what produced a result (versions, commit, device, data, plugin origins)."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ctrbench


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state(cwd: Path | None = None) -> tuple[str, bool]:
    """(commit, dirty) of the ctrbench checkout, or ("unknown", False) outside git."""
    cwd = cwd or Path(ctrbench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                    capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit or "unknown", dirty


def environment(device: torch.device, threads: int) -> dict[str, Any]:
    """Versions and device, computed once per `ctrbench run`."""
    commit, dirty = git_state()
    if device.type == "cuda":
        dev = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        dev = f"cpu ({threads} threads, {platform.machine()})"
    env: dict[str, Any] = {
        "ctrbench": ctrbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "device": dev,
    }
    tf = _version("transformers")
    if tf:
        env["transformers"] = tf
    return env
