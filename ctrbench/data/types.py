"""The in-memory form every dataset plugin produces and every method consumes."""

from __future__ import annotations

from collections.abc import Mapping
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


@dataclass(frozen=True)
class TextSpec:
    """How a dataset's samples read as text, shipped by the dataset; every entry is optional and an empty one
    means `ctrbench.text`'s default (the heuristics documented there).

    Templates are ``str.format`` strings whose placeholders are field names (replaced by the value's text from
    ``vocab``) and ``{history}`` (the names of the user's most recent liked items, for ``row``/``user``/``prompt``).

    - ``labels``: field name -> label in "label is value." texts, over ``Field.text_name``.
    - ``row``: one sample (default: "label is value." for every categorical field).
    - ``item``: one item; only item-side fields (default: "label is value." for the item-side fields).
    - ``user``: one user; only user-side fields and ``{history}`` (default: the user-side fields).
    - ``prompt``: a sample as a Yes/No question for a language model (default: a generic one).
    - ``item_name``: the field that names an item in histories (default: ``title``/``name``/``item_title``).

    It is code, not data: a dataset attaches it when it loads (``data.text = ...``), it is not stored in the
    preprocessing cache and not part of ``fingerprint``; token caches key on the template text itself.
    """

    labels: Mapping[str, str] = field(default_factory=dict)
    row: str = ""
    item: str = ""
    user: str = ""
    prompt: str = ""
    item_name: str = ""


@dataclass
class CTRData:
    """A preprocessed CTR dataset.

    ``X[:, j]`` holds the index of ``fields[j]`` (categorical fields only, 0 = unknown). Sequence fields
    (e.g. user history for DIN/DIEN) live in ``sequences[name]`` as ``int64[N, L]``, left-aligned and
    zero-padded, most recent first, and are described in ``sequence_fields`` (``Field.shares`` names the
    categorical field whose indices they hold, e.g. ``history`` shares ``item_id``).
    ``vocab[field][i]`` is the text of index ``i``.
    ``user``/``item`` are the raw-id indices used for long-tail buckets. ``splits`` maps train/valid/test
    to sorted row-index arrays. Arrays may be ``np.memmap`` for sets larger than memory. ``text``: the dataset's
    own text templates and labels (`TextSpec`; empty = the defaults of ``ctrbench.text``).

    ``item_text[name][i]`` is a text of item index ``i`` that is *not* a model input (a product description):
    one entry per index of ``item_field`` (index 0, unknown, is ``""``). Kept apart from ``X`` because a
    field with one value per item would hand every ID model a second item id; the text layer reads it by name
    like an item-side field (templates' ``{name}``, `ctrbench.text.item_texts`).
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
    text: TextSpec = field(default_factory=TextSpec)
    item_text: dict[str, list[str]] = field(default_factory=dict)

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
        if self.item_text:
            self._check_item_text()

    def _check_item_text(self) -> None:
        names = {f.name for f in self.fields} | {f.name for f in self.sequence_fields} | {"history"}
        clash = sorted(set(self.item_text) & names)
        if clash:
            raise ValueError(f"dataset '{self.name}': item_text {clash} share a name with a field")
        n_items = self.fields[self.field_index(self.item_field)].vocab_size
        for name, texts in self.item_text.items():
            if len(texts) != n_items:
                raise ValueError(f"dataset '{self.name}': item_text '{name}' has {len(texts)} entries, expected one "
                                 f"per index of '{self.item_field}' ({n_items})")

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
