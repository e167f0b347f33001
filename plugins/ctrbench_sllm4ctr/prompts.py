"""Prompts for Yes/No CTR prediction: one template per dataset, user and item ids included (as SLLM4CTR and
TallRec do), the user's most recent liked items by name, and a question ending in "Answer:" so the next token is
the answer. A suite can pass its own template (``method.template``) with ``{field}`` placeholders.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np

from ctrbench.data.types import CTRData
from ctrbench.errors import DataError

QUESTION = "Answer Yes or No. Answer:"

_MOVIELENS = ("User {user_id} is a {age}-year-old {gender} {occupation} (zip code {zip_code}). "
              "The user recently liked: {history}. Movie {item_id} is \"{title}\" ({release_year}; {genres}). "
              "Will user {user_id} like movie {item_id}? " + QUESTION)

# Keyed by dataset name prefix; the longest matching prefix wins.
TEMPLATES = {
    "movielens": _MOVIELENS,
}

_NAME_FIELDS = ("title", "name", "item_title")


def template_for(data: CTRData, template: str = "auto") -> str:
    """The template a run uses: the dataset's own for ``"auto"`` (a generic one for unknown datasets)."""
    if template != "auto":
        return template
    for prefix in sorted(TEMPLATES, key=len, reverse=True):
        if data.name.startswith(prefix):
            return TEMPLATES[prefix]
    return generic_template(data)


def generic_template(data: CTRData) -> str:
    """"<field> is {field}." for every categorical field, the history, and the question."""
    parts = [f"{f.label} is {{{f.name}}}." for f in data.fields if f.kind == "categorical"]
    if data.sequence_fields:
        parts.append("The user recently liked: {history}.")
    return " ".join(parts) + " Will the user click this item? " + QUESTION


def placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


class PromptBuilder:
    """Renders the prompt of any row of ``data``; ``history_items`` caps how many liked items are named."""

    def __init__(self, data: CTRData, template: str = "auto", history_items: int = 5) -> None:
        self.data = data
        self.template = template_for(data, template)
        self.history_items = history_items
        fields = {f.name: j for j, f in enumerate(data.fields)}
        names = placeholders(self.template)
        unknown = [n for n in names if n not in fields and n != "history"]
        if unknown:
            raise DataError(f"prompt template: dataset '{data.name}' has no field(s) {unknown}; "
                            f"fields: {', '.join(fields)} (and 'history')")
        self._columns = {n: fields[n] for n in names if n in fields}
        self._item_names = self._names_of_items() if "history" in names else None

    def _value(self, name: str, index: int) -> str:
        f = self.data.fields[self._columns[name]]
        if f.kind == "numeric":
            return str(index)
        vocab = self.data.vocab.get(name)
        return vocab[index] if vocab is not None and 0 <= index < len(vocab) else str(index)

    def _names_of_items(self) -> list[str]:
        """Item index -> its name (the first item-side name field, else the item id's value)."""
        data = self.data
        item_j = data.field_index(data.item_field)
        item_vocab = data.vocab.get(data.item_field) or [str(i) for i in range(data.fields[item_j].vocab_size)]
        names = list(item_vocab)
        name_field = next((n for n in _NAME_FIELDS if n in {f.name for f in data.fields}), None)
        if name_field is None:
            return names
        name_j = data.field_index(name_field)
        vocab = data.vocab.get(name_field, [])
        items = np.asarray(data.X[:, item_j], dtype=np.int64)
        present, first = np.unique(items, return_index=True)
        values = np.asarray(data.X[first, name_j], dtype=np.int64)
        for i, v in zip(present, values, strict=True):
            if 0 <= v < len(vocab):
                names[i] = vocab[v]
        return names

    def _history(self, row: int) -> str:
        if not self.data.sequences or "history" not in self.data.sequences or self._item_names is None:
            return "nothing yet"
        seq = [int(i) for i in np.asarray(self.data.sequences["history"][row]) if i != 0][: self.history_items]
        return ", ".join(self._item_names[i] for i in seq) if seq else "nothing yet"

    def __call__(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        rows = np.asarray(rows, dtype=np.int64)
        cols = {name: np.asarray(self.data.X[rows, j]) for name, j in self._columns.items()}
        out = []
        for k, row in enumerate(rows):
            values = {name: self._value(name, int(col[k])) for name, col in cols.items()}
            if self._item_names is not None:
                values["history"] = self._history(int(row))
            out.append(self.template.format(**values))
        return out
