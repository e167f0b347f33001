"""The in-memory form every dataset plugin produces and every method consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

FieldKind = Literal["categorical", "sequence", "numeric"]
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Field:
    """One input field.

    ``vocab_size`` counts index 0, which is reserved for padding/unknown in every field, so an
    embedding table of ``vocab_size`` rows covers every index in ``X``. ``text_name`` is the phrase used
    when the sample is rendered as text ("``text_name`` is ``value``.").
    """

    name: str
    kind: FieldKind
    vocab_size: int
    text_name: str = ""
    shares: str = ""  # sequence fields: the categorical field whose index space (and table) they use

    @property
    def label(self) -> str:
        return self.text_name or self.name.replace("_", " ")


@dataclass
class CTRData:
    """A preprocessed CTR dataset.

    ``X[:, j]`` holds the index of ``fields[j]`` (categorical fields only, 0 = unknown). Sequence fields
    (e.g. user history for DIN/DIEN) live in ``sequences[name]`` as ``int64[N, L]``, left-aligned and
    zero-padded, most recent first, and are described in ``sequence_fields`` (``Field.shares`` names the
    categorical field whose indices they hold, e.g. ``history`` shares ``item_id``).
    ``vocab[field][i]`` is the text of index ``i``.
    ``user``/``item`` are the raw-id indices used for long-tail buckets. ``splits`` maps train/valid/test
    to sorted row-index arrays. Arrays may be ``np.memmap`` for sets larger than memory.
    """

    name: str
    fields: list[Field]
    X: np.ndarray
    y: np.ndarray
    ts: np.ndarray
    user: np.ndarray
    item: np.ndarray
    splits: dict[str, np.ndarray]
    vocab: dict[str, list[str]] = field(default_factory=dict)
    sequences: dict[str, np.ndarray] = field(default_factory=dict)
    sequence_fields: list[Field] = field(default_factory=list)
    user_field: str = "user_id"
    item_field: str = "item_id"
    fingerprint: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        n = len(self.y)
        if self.X.ndim != 2 or self.X.shape != (n, len(self.fields)):
            raise ValueError(f"dataset '{self.name}': X has shape {self.X.shape}, expected ({n}, {len(self.fields)})")
        for name, arr in (("ts", self.ts), ("user", self.user), ("item", self.item)):
            if len(arr) != n:
                raise ValueError(f"dataset '{self.name}': {name} has {len(arr)} rows, expected {n}")
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"dataset '{self.name}': splits missing {missing}")

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def field_index(self, name: str) -> int:
        for j, f in enumerate(self.fields):
            if f.name == name:
                return j
        raise KeyError(f"dataset '{self.name}' has no field '{name}'")

    def split_sizes(self) -> dict[str, int]:
        return {s: int(len(self.splits[s])) for s in SPLITS}
