"""Provenance: what produced a result (versions, commit, device, data, plugin origins)."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

import numpy as np
import torch

import ctrbench
from ctrbench.gitinfo import git_state


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


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
