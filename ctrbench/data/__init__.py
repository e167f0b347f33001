"""Datasets: the `CTRData` form, data sources, long-tail buckets, preprocessing cache (texts: `ctrbench.text`).

The names below are loaded on first use (PEP 562), so importing a submodule (``ctrbench.data.commands``, which
the CLI's parser needs) does not import numpy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctrbench.data.types import SPLITS, CTRData, Field, TextSpec

__all__ = ["CTRData", "Field", "SPLITS", "TextSpec"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ctrbench.data import types

        return getattr(types, name)
    raise AttributeError(f"module 'ctrbench.data' has no attribute {name!r}")
