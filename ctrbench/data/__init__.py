"""Datasets: the `CTRData` form, data sources, text rendering, long-tail buckets, preprocessing cache."""

from ctrbench.data.types import SPLITS, CTRData, Field, TextSpec

__all__ = ["CTRData", "Field", "SPLITS", "TextSpec"]
