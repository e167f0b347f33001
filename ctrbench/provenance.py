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


BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name and the bf16 instruction sets it has, e.g. ``AMD EPYC 9R14, avx512_bf16``.

    Recorded because a bf16-autocast run (``train.cpu_amp``) is bit-reproducible only on the same kind of CPU:
    oneDNN picks AMX, AVX512-BF16 or emulated kernels by what the CPU has, and they round differently (the same
    TallRec run and commit gave test AUC 0.5940 on an EPYC with avx512_bf16 and 0.6020 on a Xeon with AMX).
    Where ``/proc/cpuinfo`` is unreadable (macOS, Windows) it is ``platform.processor()``, often just the
    architecture or empty."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read(1 << 16)
        except OSError:
            return platform.processor()
    name, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = " ".join(value.split())
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return ", ".join([name, *(f for f in BF16_FLAGS if f in flags)]).strip(", ")


def environment(device: torch.device, threads: int) -> dict[str, Any]:
    """Versions and device, computed once per `ctrbench run`."""
    commit, dirty = git_state()
    if device.type == "cuda":
        dev = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        model = cpu_model()
        plural = "s" if threads != 1 else ""
        dev = f"cpu ({threads} thread{plural}, {platform.machine()}{', ' + model if model else ''})"
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
