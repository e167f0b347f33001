"""Samples, items and users as text, from a dataset's metadata.

Three kinds of text, each with a default built from ``vocab`` and the field labels, and each replaceable by a
template the dataset ships in ``data.text`` (`ctrbench.data.types.TextSpec`) or the caller passes:

- **row texts** (one per sample), by default ClickPrompt's "what is what" form (ClickPrompt Eq. 4): each field
  becomes ``"<label> is <value>."`` and the phrases are joined with single spaces:
  ``"user id is 12. age is 25. gender is M. ... title is Toy Story. genres is Animation Children's Comedy."``;
- **item texts** (one per item index), by default the phrases of the item-side fields (title, genres, ...), for
  item-level methods (CELA's item encoder, its text-ID alignment);
- **user texts** (one per user index: the user-side fields; or one per row: those plus the user's most recent
  liked items by name, strictly before the row, so no label leaks);
- **prompts** (one per sample, a Yes/No question for causal LMs: TallRec, SLLM4CTR).

A field's label is ``data.text.labels[name]``, else ``Field.text_name``, else the name with spaces. Templates are
``str.format`` strings over field names and ``{history}``. Item- and user-side fields are detected from the data
(a field is item-side when no item index appears with two of its values), so every dataset gets item and user
texts without extra metadata.

Speed: per field, the phrase of every vocabulary index is built once ("age is 25.") and rows are rendered by
indexing those tables, so rendering is a few numpy gathers plus one join per row. Phrase tables and item/user
texts are cached per ``data.fingerprint`` (an unfingerprinted dataset is not cached, since two such datasets
could not be told apart).
"""

from __future__ import annotations

import string
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ctrbench.data.types import CTRData, Field
from ctrbench.errors import DataError

#: The question that ends every Yes/No prompt, so the next token is the answer.
YES_NO_QUESTION = "Answer Yes or No. Answer:"
#: Fields that name an item, tried in this order when the dataset names none (``TextSpec.item_name``).
NAME_FIELDS = ("title", "name", "item_title")
#: What ``{history}`` reads when the user has no earlier liked item.
NO_HISTORY = "nothing yet"
HISTORY = "history"  # the sequence field (and placeholder) holding the user's earlier liked items

_MAX_CACHED = 8
_phrase_cache: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
_text_cache: OrderedDict[tuple[Any, ...], list[str]] = OrderedDict()


# -- labels and phrases ----------------------------------------------------------------------------------

def label(data: CTRData, f: Field) -> str:
    """The label of field ``f`` in texts: the dataset's ``text.labels`` entry, else ``f.label``."""
    return data.text.labels.get(f.name) or f.label


def phrase(f: Field, value: str, label: str | None = None) -> str:
    """One field's text: ``"<label> is <value>."`` (``label`` defaults to ``f.label``)."""
    return f"{label or f.label} is {value}."


def _lookup(data: CTRData, name: str) -> tuple[int, Field]:
    for j, f in enumerate(data.fields):
        if f.name == name:
            return j, f
    known = [f.name for f in data.fields] + [f.name for f in data.sequence_fields] + list(data.item_text)
    raise DataError(f"dataset '{data.name}' has no field '{name}' to render; fields: {', '.join(known)}")


def _phrases(data: CTRData, j: int, f: Field) -> np.ndarray:
    """Object array: phrase of every index of field ``f`` (cached per fingerprint and label)."""
    lab = label(data, f)
    key = (data.fingerprint, f.name, lab)
    if data.fingerprint and key in _phrase_cache:
        _phrase_cache.move_to_end(key)
        return _phrase_cache[key]
    vocab = data.vocab.get(f.name)
    if vocab is None:
        raise DataError(f"dataset '{data.name}' has no vocab for field '{f.name}', so it cannot be rendered as text")
    table = np.array([phrase(f, v, lab) for v in vocab], dtype=object)
    if data.fingerprint:
        _phrase_cache[key] = table
        while len(_phrase_cache) > _MAX_CACHED * max(1, len(data.fields)):
            _phrase_cache.popitem(last=False)
    return table


def _sequence_column(data: CTRData, name: str, rows: np.ndarray) -> list[str]:
    f = next(f for f in data.sequence_fields if f.name == name)
    vocab = data.vocab.get(name) or data.vocab.get(data.item_field, [])
    lab = label(data, f)
    out = []
    for seq in np.asarray(data.sequences[name][rows]):
        values = [vocab[i] if i < len(vocab) else str(i) for i in seq if i != 0]
        out.append(phrase(f, ", ".join(values), lab))
    return out


def item_text_label(data: CTRData, name: str) -> str:
    """The label of item text ``name`` in texts: the dataset's ``text.labels`` entry, else the name, spaced."""
    return data.text.labels.get(name) or name.replace("_", " ")


def _item_text_values(data: CTRData, name: str, rows: np.ndarray) -> list[str]:
    texts = data.item_text[name]
    items = np.asarray(data.X[rows, data.field_index(data.item_field)], dtype=np.int64)
    return [texts[i] if 0 <= i < len(texts) else "" for i in items]


def _item_text_column(data: CTRData, name: str, rows: np.ndarray) -> list[str]:
    lab = item_text_label(data, name)
    return [f"{lab} is {value}." for value in _item_text_values(data, name, rows)]


def _default_fields(data: CTRData) -> list[str]:
    return [f.name for f in data.fields if f.kind == "categorical"]


def _as_rows(data: CTRData, rows: Iterable[int] | np.ndarray) -> np.ndarray:
    rows = np.asarray(rows if isinstance(rows, np.ndarray) else list(rows), dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= data.num_samples):
        raise DataError(f"dataset '{data.name}': row index out of range 0..{data.num_samples - 1}")
    return rows


def render_rows(data: CTRData, rows: Iterable[int] | np.ndarray, fields: Sequence[str] | None = None) -> list[str]:
    """"label is value." text of each row in ``rows``; ``fields`` picks and orders the fields (default: all
    categorical ones). A sequence field renders as its values joined by ", " (item ids for ``history``)."""
    rows = _as_rows(data, rows)
    names = list(fields) if fields is not None else _default_fields(data)
    if rows.size == 0:
        return []
    seq_names = {f.name for f in data.sequence_fields}
    columns: list[np.ndarray | list[str]] = []
    for name in names:
        if name in seq_names and name in data.sequences:
            columns.append(_sequence_column(data, name, rows))
            continue
        if name in data.item_text:
            columns.append(_item_text_column(data, name, rows))
            continue
        j, f = _lookup(data, name)
        idx = np.asarray(data.X[rows, j])
        if f.kind == "numeric":
            columns.append([phrase(f, str(v), label(data, f)) for v in idx])
            continue
        table = _phrases(data, j, f)
        if idx.max(initial=0) >= len(table):
            raise DataError(f"dataset '{data.name}': field '{name}' has index {int(idx.max())} outside its vocab")
        columns.append(table[idx])
    return [" ".join(parts) for parts in zip(*columns, strict=True)]


def render_row(data: CTRData, row: int, fields: Sequence[str] | None = None) -> str:
    """Text of one sample, e.g. ``"user id is 12. age is 25. gender is M."``."""
    return render_rows(data, [int(row)], fields)[0]


# -- item- and user-side fields, item names ------------------------------------------------------------------

def _side_fields(data: CTRData, key_field: str) -> list[str]:
    """Categorical fields other than ``key_field`` whose value is a function of ``key_field``'s index."""
    key_j = data.field_index(key_field)
    key = np.asarray(data.X[:, key_j], dtype=np.int64)
    out = []
    for j, f in enumerate(data.fields):
        if j == key_j or f.kind != "categorical":
            continue
        pairs = np.unique(key * f.vocab_size + np.asarray(data.X[:, j], dtype=np.int64))
        if len(np.unique(pairs // f.vocab_size)) == len(pairs):
            out.append(f.name)
    return out


def item_side_fields(data: CTRData) -> list[str]:
    """Fields whose value is a function of the item (title, genres, ...), excluding the item id itself.

    Detected from the data rather than declared, so every dataset gets item texts without extra metadata:
    a field is item-side when no item index appears with two different values of it.
    """
    return _side_fields(data, data.item_field)


def user_side_fields(data: CTRData) -> list[str]:
    """Fields whose value is a function of the user (age, gender, ...), excluding the user id itself; detected
    as `item_side_fields` is."""
    return _side_fields(data, data.user_field)


def item_name_field(data: CTRData) -> str | None:
    """The field that names an item: ``data.text.item_name``, else the first of `NAME_FIELDS` the data has."""
    names = {f.name for f in data.fields}
    if data.text.item_name:
        if data.text.item_name not in names:
            raise DataError(f"dataset '{data.name}': text.item_name names field '{data.text.item_name}', "
                            f"which it does not have; fields: {', '.join(names)}")
        return data.text.item_name
    return next((n for n in NAME_FIELDS if n in names), None)


def item_names(data: CTRData) -> list[str]:
    """Item index -> its name: the value of `item_name_field` on the item's first row, else the item id's text
    (index ``i`` itself when the item field has no vocab)."""
    item_j = data.field_index(data.item_field)
    item_vocab = data.vocab.get(data.item_field) or [str(i) for i in range(data.fields[item_j].vocab_size)]
    names = list(item_vocab)
    name_field = item_name_field(data)
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


def history_names(data: CTRData, rows: Sequence[int] | np.ndarray, limit: int,
                  names: Sequence[str] | None = None) -> list[list[str]]:
    """Per row, the names of the user's ``limit`` most recent liked items before it (most recent first; empty
    without a ``history`` sequence). ``names``: `item_names(data)`, when the caller has it already."""
    rows = np.asarray(rows, dtype=np.int64)
    if HISTORY not in data.sequences or limit <= 0:
        return [[] for _ in rows]
    names = item_names(data) if names is None else names
    out = []
    for seq in np.asarray(data.sequences[HISTORY][rows]):
        recent = [int(i) for i in seq if i != 0][:limit]
        out.append([names[i] if i < len(names) else str(i) for i in recent])
    return out


# -- templates -------------------------------------------------------------------------------------------

def placeholders(template: str) -> list[str]:
    """The ``{name}`` placeholders of a ``str.format`` template, in order (repeats kept)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


class RowTemplate:
    """Renders a ``str.format`` template for rows of ``data``: ``{field}`` is the value's text (``vocab``; the index
    for numeric fields or indices outside the vocab), ``{history}`` the names of the ``history_items`` most recent
    liked items, joined by ", " (``empty_history`` when there are none). ``what`` names the template in errors.
    """

    def __init__(self, data: CTRData, template: str, *, history_items: int = 5, empty_history: str = NO_HISTORY,
                 what: str = "template") -> None:
        self.data = data
        self.template = template
        self.history_items = history_items
        self.empty_history = empty_history
        fields = {f.name: j for j, f in enumerate(data.fields)}
        names = placeholders(template)
        unknown = [n for n in names if n not in fields and n not in data.item_text and n != HISTORY]
        if unknown:
            texts = f", item texts: {', '.join(data.item_text)}" if data.item_text else ""
            raise DataError(f"{what}: dataset '{data.name}' has no field(s) {unknown}; "
                            f"fields: {', '.join(fields)}{texts} (and '{HISTORY}')")
        self.fields = list(dict.fromkeys(n for n in names if n in fields))
        self._columns = {n: fields[n] for n in self.fields}
        self._item_texts = list(dict.fromkeys(n for n in names if n in data.item_text and n not in fields))
        self._item_names = item_names(data) if HISTORY in names else None

    def _value(self, name: str, index: int) -> str:
        f = self.data.fields[self._columns[name]]
        if f.kind == "numeric":
            return str(index)
        vocab = self.data.vocab.get(name)
        return vocab[index] if vocab is not None and 0 <= index < len(vocab) else str(index)

    def _history(self, rows: np.ndarray) -> list[str]:
        lists = history_names(self.data, rows, self.history_items, self._item_names)
        return [", ".join(names) if names else self.empty_history for names in lists]

    def __call__(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        rows = _as_rows(self.data, rows)
        cols = {name: np.asarray(self.data.X[rows, j]) for name, j in self._columns.items()}
        history = self._history(rows) if self._item_names is not None else None
        texts = {name: _item_text_values(self.data, name, rows) for name in self._item_texts}
        out = []
        for k in range(len(rows)):
            values = {name: self._value(name, int(col[k])) for name, col in cols.items()}
            values.update((name, column[k]) for name, column in texts.items())
            if history is not None:
                values[HISTORY] = history[k]
            out.append(self.template.format(**values))
        return out


def _check_side(data: CTRData, template: str, allowed: list[str], what: str) -> None:
    bad = [n for n in placeholders(template) if n not in allowed]
    if bad:
        raise DataError(f"{what}: dataset '{data.name}': {bad} not constant per {what.split()[0]} (allowed: "
                        f"{', '.join(allowed)})")


def _cached(key: tuple[Any, ...], data: CTRData, make: Any) -> list[str]:
    if data.fingerprint and key in _text_cache:
        _text_cache.move_to_end(key)
        return list(_text_cache[key])
    texts = make()
    if data.fingerprint:
        _text_cache[key] = texts
        while len(_text_cache) > _MAX_CACHED:
            _text_cache.popitem(last=False)
    return list(texts)


def _labels_key(data: CTRData) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(data.text.labels.items()))


def _per_key(data: CTRData, key_field: str, render: Any) -> list[str]:
    """One text per index of ``key_field``, rendered from the index's first row (index 0 and absent ones: "")."""
    key_j = data.field_index(key_field)
    col = np.asarray(data.X[:, key_j], dtype=np.int64)
    present, first_row = np.unique(col, return_index=True)
    texts = [""] * data.fields[key_j].vocab_size
    for i, text in zip(present, render(first_row), strict=True):
        if i != 0:
            texts[int(i)] = text
    return texts


# -- the public text builders ---------------------------------------------------------------------------------

def row_texts(data: CTRData, rows: Iterable[int] | np.ndarray, *, fields: Sequence[str] | None = None,
              template: str | None = None, history_items: int = 5) -> list[str]:
    """Text of each row: ``template`` (else the dataset's ``text.row``) rendered by `RowTemplate`, else the
    "label is value." phrases of ``fields`` (`render_rows`). ``fields`` and a template exclude each other."""
    if fields is not None and template is not None:
        raise ValueError("row_texts: pass fields or template, not both")
    template = template if template is not None else (data.text.row if fields is None else "")
    if template:
        return RowTemplate(data, template, history_items=history_items, what="row template")(_as_rows(data, rows))
    return render_rows(data, rows, fields)


def item_texts(data: CTRData, fields: Sequence[str] | None = None, *, template: str | None = None) -> list[str]:
    """Text of every item, indexed by the item field's index (index 0, unknown, is ``""``).

    ``template`` (else the dataset's ``text.item`` when ``fields`` is not given) may name item-side fields, the
    item field and the dataset's ``item_text`` columns; without one, the "label is value." phrases of ``fields``,
    by default ``item_side_fields(data)`` then the ``item_text`` columns: the item id carries no meaning for a
    language model, its title, genres and description do. Items are rendered from their first row; item-side
    fields are constant per item, so any row gives the same text.
    """
    if fields is not None and template is not None:
        raise ValueError("item_texts: pass fields or template, not both")
    template = template if template is not None else (data.text.item if fields is None else "")
    if template:
        _check_side(data, template, [data.item_field, *item_side_fields(data), *data.item_text], "item template")
        render = RowTemplate(data, template, what="item template")
        return _cached((data.fingerprint, "item-template", template), data, lambda: _per_key(data, data.item_field,
                                                                                             render))
    names = tuple(fields) if fields is not None else (*item_side_fields(data), *data.item_text)
    return _cached((data.fingerprint, "item", names, _labels_key(data)), data,
                   lambda: _per_key(data, data.item_field, lambda r: render_rows(data, r, names) if names
                                    else [""] * len(r)))


def user_texts(data: CTRData, rows: Iterable[int] | np.ndarray | None = None, *,
               fields: Sequence[str] | None = None, template: str | None = None, history_items: int = 0) -> list[str]:
    """User texts: one per user index (``rows=None``; index 0 is ``""``), or one per row of ``rows``.

    ``template`` (else the dataset's ``text.user`` when ``fields`` is not given) may name user-side fields, the
    user field and, per row, ``{history}``. Without one: the "label is value." phrases of ``fields`` (default
    ``user_side_fields(data)``), then, per row with ``history_items`` > 0, ``"<history label> is <names>."``
    naming the user's most recent liked items before that row (`NO_HISTORY` when there are none; a DataError
    when the dataset has no history sequence). Per user there is no history: "before which row" would be
    undefined, and the latest history would leak test labels.
    """
    if fields is not None and template is not None:
        raise ValueError("user_texts: pass fields or template, not both")
    template = template if template is not None else (data.text.user if fields is None else "")
    allowed = [data.user_field, *user_side_fields(data)]
    if rows is None:
        if history_items > 0 or (template and HISTORY in placeholders(template)):
            raise ValueError("user_texts: the history is per row (liked items before it): pass rows")
        if template:
            _check_side(data, template, allowed, "user template")
            render = RowTemplate(data, template, what="user template")
            return _cached((data.fingerprint, "user-template", template), data,
                           lambda: _per_key(data, data.user_field, render))
        names = tuple(fields) if fields is not None else tuple(user_side_fields(data))
        return _cached((data.fingerprint, "user", names, _labels_key(data)), data,
                       lambda: _per_key(data, data.user_field, lambda r: render_rows(data, r, names) if names
                                        else [""] * len(r)))
    rows = _as_rows(data, rows)
    if template:
        _check_side(data, template, [*allowed, HISTORY], "user template")
        if HISTORY in placeholders(template) and history_items <= 0:
            raise ValueError("user_texts: the template names {history}; pass history_items > 0")
        return RowTemplate(data, template, history_items=history_items, what="user template")(rows)
    names = list(fields) if fields is not None else user_side_fields(data)
    texts = render_rows(data, rows, names) if names else [""] * len(rows)
    if history_items <= 0:
        return texts
    hist_field = next((f for f in data.sequence_fields if f.name == HISTORY), None)
    if hist_field is None or HISTORY not in data.sequences:
        raise DataError(f"dataset '{data.name}' has no '{HISTORY}' sequence to name recent items from "
                        "(build it with history_length > 0, or pass history_items=0)")
    hist_label = label(data, hist_field)
    history = history_names(data, rows, history_items)
    tails = [f"{hist_label} is {', '.join(h) if h else NO_HISTORY}." for h in history]
    return [f"{t} {h}" if t else h for t, h in zip(texts, tails, strict=True)]


def generic_prompt(data: CTRData) -> str:
    """"<label> is {field}." for every categorical field, the history, and the Yes/No question."""
    parts = [f"{label(data, f)} is {{{f.name}}}." for f in data.fields if f.kind == "categorical"]
    if data.sequence_fields:
        parts.append("The user recently liked: {history}.")
    return " ".join(parts) + " Will the user click this item? " + YES_NO_QUESTION


def prompt_template(data: CTRData, template: str = "auto") -> str:
    """The Yes/No prompt template: ``template`` itself, or for ``"auto"`` the dataset's ``text.prompt`` (else
    `generic_prompt`)."""
    if template != "auto":
        return template
    return data.text.prompt or generic_prompt(data)


def clear_cache() -> None:
    """Forget cached phrase tables and item/user texts (tests; long-lived processes that reload data)."""
    _phrase_cache.clear()
    _text_cache.clear()
