"""Samples as text, in ClickPrompt's "what is what" template (ClickPrompt Eq. 4).

Each field becomes ``"<text_name> is <value>."`` and the phrases are joined with single spaces:
``"user id is 12. age is 25. gender is M. ... title is Toy Story. genres is Animation Children's Comedy."``.
Rendering is core code, not per-dataset code, so every dataset gets the same template from its
``vocab`` and every method (ClickPrompt, CELA, the PLM baselines) sees identical text.

Speed: per field, the phrase of every vocabulary index is built once ("age is 25.") and rows are
rendered by indexing those tables, so rendering is a few numpy gathers plus one join per row. The
tables are cached per ``data.fingerprint`` (an unfingerprinted dataset is not cached, since two such
datasets could not be told apart).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np

from ctrbench.data.types import CTRData, Field
from ctrbench.errors import DataError

_MAX_CACHED = 8
_phrase_cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_item_cache: OrderedDict[tuple[str, tuple[str, ...]], list[str]] = OrderedDict()


def phrase(f: Field, value: str) -> str:
    """One field's text: ``"<text_name> is <value>."``."""
    return f"{f.label} is {value}."


def _lookup(data: CTRData, name: str) -> tuple[int, Field]:
    for j, f in enumerate(data.fields):
        if f.name == name:
            return j, f
    known = [f.name for f in data.fields] + [f.name for f in data.sequence_fields]
    raise DataError(f"dataset '{data.name}' has no field '{name}' to render; fields: {', '.join(known)}")


def _phrases(data: CTRData, j: int, f: Field) -> np.ndarray:
    """Object array: phrase of every index of field ``f`` (cached per fingerprint)."""
    key = (data.fingerprint, f.name)
    if data.fingerprint and key in _phrase_cache:
        _phrase_cache.move_to_end(key)
        return _phrase_cache[key]
    vocab = data.vocab.get(f.name)
    if vocab is None:
        raise DataError(f"dataset '{data.name}' has no vocab for field '{f.name}', so it cannot be rendered as text")
    table = np.array([phrase(f, v) for v in vocab], dtype=object)
    if data.fingerprint:
        _phrase_cache[key] = table
        while len(_phrase_cache) > _MAX_CACHED * max(1, len(data.fields)):
            _phrase_cache.popitem(last=False)
    return table


def _sequence_column(data: CTRData, name: str, rows: np.ndarray) -> list[str]:
    f = next(f for f in data.sequence_fields if f.name == name)
    vocab = data.vocab.get(name) or data.vocab.get(data.item_field, [])
    out = []
    for seq in np.asarray(data.sequences[name][rows]):
        values = [vocab[i] if i < len(vocab) else str(i) for i in seq if i != 0]
        out.append(phrase(f, ", ".join(values)))
    return out


def _default_fields(data: CTRData) -> list[str]:
    return [f.name for f in data.fields if f.kind == "categorical"]


def render_rows(data: CTRData, rows: Iterable[int] | np.ndarray, fields: Sequence[str] | None = None) -> list[str]:
    """Text of each row in ``rows``; ``fields`` picks and orders the fields (default: all categorical ones)."""
    rows = np.asarray(rows if isinstance(rows, np.ndarray) else list(rows), dtype=np.int64)
    names = list(fields) if fields is not None else _default_fields(data)
    if rows.size == 0:
        return []
    if rows.min() < 0 or rows.max() >= data.num_samples:
        raise DataError(f"dataset '{data.name}': row index out of range 0..{data.num_samples - 1}")
    seq_names = {f.name for f in data.sequence_fields}
    columns: list[np.ndarray | list[str]] = []
    for name in names:
        if name in seq_names and name in data.sequences:
            columns.append(_sequence_column(data, name, rows))
            continue
        j, f = _lookup(data, name)
        idx = np.asarray(data.X[rows, j])
        if f.kind == "numeric":
            columns.append([phrase(f, str(v)) for v in idx])
            continue
        table = _phrases(data, j, f)
        if idx.max(initial=0) >= len(table):
            raise DataError(f"dataset '{data.name}': field '{name}' has index {int(idx.max())} outside its vocab")
        columns.append(table[idx])
    return [" ".join(parts) for parts in zip(*columns, strict=True)]


def render_row(data: CTRData, row: int, fields: Sequence[str] | None = None) -> str:
    """Text of one sample, e.g. ``"user id is 12. age is 25. gender is M."``."""
    return render_rows(data, [int(row)], fields)[0]


def item_side_fields(data: CTRData) -> list[str]:
    """Fields whose value is a function of the item (title, genres, ...), excluding the item id itself.

    Detected from the data rather than declared, so every dataset gets item texts without extra metadata:
    a field is item-side when no item index appears with two different values of it.
    """
    item_j = data.field_index(data.item_field)
    item = np.asarray(data.X[:, item_j], dtype=np.int64)
    out = []
    for j, f in enumerate(data.fields):
        if j == item_j or f.kind != "categorical":
            continue
        pairs = np.unique(item * f.vocab_size + np.asarray(data.X[:, j], dtype=np.int64))
        if len(np.unique(pairs // f.vocab_size)) == len(pairs):
            out.append(f.name)
    return out


def item_texts(data: CTRData, fields: Sequence[str] | None = None) -> list[str]:
    """Text of every item, indexed by the item field's index (index 0, unknown, is ``""``).

    ``fields`` defaults to ``item_side_fields(data)``: the item id carries no meaning for a language
    model, its title and genres do. Items are rendered from their first row; item-side fields are
    constant per item, so any row gives the same text.
    """
    names = tuple(fields) if fields is not None else tuple(item_side_fields(data))
    key = (data.fingerprint, names)
    if data.fingerprint and key in _item_cache:
        _item_cache.move_to_end(key)
        return list(_item_cache[key])
    item_j = data.field_index(data.item_field)
    n_items = data.fields[item_j].vocab_size
    item_col = np.asarray(data.X[:, item_j], dtype=np.int64)
    present, first_row = np.unique(item_col, return_index=True)
    texts = [""] * n_items
    if names:
        for i, text in zip(present, render_rows(data, first_row, names), strict=True):
            if i != 0:
                texts[int(i)] = text
    if data.fingerprint:
        _item_cache[key] = texts
        while len(_item_cache) > _MAX_CACHED:
            _item_cache.popitem(last=False)
    return list(texts)


def clear_cache() -> None:
    """Forget cached phrase tables and item texts (tests; long-lived processes that reload data)."""
    _phrase_cache.clear()
    _item_cache.clear()
