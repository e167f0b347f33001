"""Prompts for Yes/No CTR prediction, one per method's paper, plus the dataset's own.

``template`` (a method key) picks one:

- ``"alpaca"`` — TALLRec's (Bao et al. 2023; its ``preprocess_movie.py`` and ``finetune_rec.py``): the Alpaca frame
  ``### Instruction / ### Input / ### Response``, the instruction "Given the user's preference and unpreference,
  identify whether the user will like the target movie by answering "Yes." or "No."." and an input naming, in
  time order, the titles of the user's last ``history_items`` (10) interactions before the row, split into liked
  (label 1; TALLRec: rating > 3) and disliked ones, and the target title — no ids, no demographics. The response
  (the answer token) follows ``### Response:\\n``.
- ``"sllm4ctr"`` — SLLM4CTR's (Appendix A.4, and A.7 for the whole prompt as fed): the Alpaca preamble, the
  instruction "Given the user's and item's attributes, identify whether the user will like the target item by
  answering "Yes." or "No."", and an input "Here is the information of the user <user id>: <user features>. Here
  is the information of the <movie> <item id>: <item features>. Response:". The paper gives templates for its own
  datasets only (Book-Crossing, Amazon); for others the features are the dataset's user- and item-side fields
  as "<label> is <value>." phrases. No history (the paper's templates have none).
- ``"auto"`` — the dataset's own ``text.prompt`` (MovieLens: ids, demographics, recently liked titles), else a
  generic one (`ctrbench.text.templates.prompt_template`).
- any other string — a ``str.format`` template over field names, ``{history}`` (most recent liked items, core
  `RowTemplate`), and this module's ``{liked}``, ``{disliked}`` (TALLRec's lists, titles in double quotes joined
  by ", ", "" when empty) and ``{target}`` (the row's item title, quoted).

Histories are built from the rows of the same user with a strictly earlier timestamp (ties: row order), whatever
their split, as the core user history is: nothing from the row itself or later leaks in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctrbench.data.types import CTRData
from ctrbench.errors import DataError
from ctrbench.text.templates import (
    YES_NO_QUESTION,
    RowTemplate,
    generic_prompt,
    item_names,
    item_side_fields,
    label,
    placeholders,
    prompt_template,
    user_side_fields,
)

QUESTION = YES_NO_QUESTION
generic_template = generic_prompt
template_for = prompt_template

__all__ = ["ALPACA_PREAMBLE", "InteractionHistory", "PromptBuilder", "QUESTION", "generic_template", "item_noun",
           "item_titles", "placeholders", "resolve_template", "sllm4ctr_template", "tallrec_template",
           "template_for"]

ALPACA_PREAMBLE = ("Below is an instruction that describes a task, paired with an input that provides further "
                   "context. Write a response that appropriately completes the request.")
LIKED, DISLIKED, TARGET = "liked", "disliked", "target"
#: Placeholders this module fills (TALLRec's lists and target); reserved in method templates.
INTERACTION_PLACEHOLDERS = (LIKED, DISLIKED, TARGET)
#: A field holding an item's year, appended to its title as TALLRec's MovieLens names are ("Toy Story (1995)").
YEAR_FIELDS = ("release_year", "year")
_SEP = "\x1f"  # joins the field values rendered by RowTemplate in one pass


# -- what an item is called --------------------------------------------------------------------------------

def item_noun(data: CTRData) -> str:
    """"movie" for MovieLens, "book" for book datasets, else "item" (the word the papers' prompts use)."""
    name = data.name.lower()
    if "movie" in name:
        return "movie"
    if "book" in name or "goodreads" in name:
        return "book"
    return "item"


def item_titles(data: CTRData) -> list[str]:
    """Item index -> title as TALLRec names it: `item_names` (the title field, else the id's text), with
    " (<year>)" appended when the data has a year field (`YEAR_FIELDS`) and the title does not end with it."""
    names = list(item_names(data))
    fields = {f.name for f in data.fields}
    year_field = next((f for f in YEAR_FIELDS if f in fields), None)
    if year_field is None:
        return names
    items = np.asarray(data.X[:, data.field_index(data.item_field)], dtype=np.int64)
    years = np.asarray(data.X[:, data.field_index(year_field)], dtype=np.int64)
    vocab = data.vocab.get(year_field, [])
    present, first = np.unique(items, return_index=True)
    for i, y in zip(present, years[first], strict=True):
        year = vocab[y] if 0 < y < len(vocab) else ""
        if year and year.lower() != "unknown" and i < len(names) and not names[i].endswith(f"({year})"):
            names[i] = f"{names[i]} ({year})"
    return names


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def escape_braces(text: str) -> str:
    """Literal text inside a `str.format` template."""
    return text.replace("{", "{{").replace("}", "}}")


def require_user_and_item(data: CTRData, prompts: str = "the TALLRec and SLLM4CTR prompts") -> None:
    """A prompt that names a user and an item needs both key fields; say which is missing, for which prompts."""
    names = {f.name for f in data.fields}
    missing = [f for f in (data.user_field, data.item_field) if f not in names]
    if missing:
        raise DataError(f"dataset '{data.name}' has no {' / '.join(missing)} field; {prompts} name a user and an "
                        "item")


# -- the papers' templates ----------------------------------------------------------------------------------

def tallrec_template(data: CTRData) -> str:
    """TALLRec's Alpaca prompt (``preprocess_movie.py`` + ``generate_prompt``), up to ``### Response:\\n``."""
    noun = item_noun(data)
    instruction = (f"Given the user's preference and unpreference, identify whether the user will like the target "
                   f"{noun} by answering \"Yes.\" or \"No.\".")
    task = (f"User Preference: {{{LIKED}}}\nUser Unpreference: {{{DISLIKED}}}\n"
            f"Whether the user will like the target {noun} {{{TARGET}}}?")
    return (f"{ALPACA_PREAMBLE}\n\n### Instruction:\n{escape_braces(instruction)}\n\n### Input:\n{task}\n\n"
            "### Response:\n")


def sllm4ctr_template(data: CTRData) -> str:
    """SLLM4CTR's prompt (Appendix A.4 / A.7) with the dataset's user- and item-side fields as features."""
    require_user_and_item(data)

    def phrases(names: list[str]) -> str:
        return " ".join(f"{escape_braces(label(data, data.fields[data.field_index(n)]))} is {{{n}}}." for n in names)

    user, item = phrases(user_side_fields(data)), phrases(item_side_fields(data))
    user_part = f"Here is the information of the user {{{data.user_field}}}" + (f": {user}" if user else ".")
    item_part = (f"Here is the information of the {item_noun(data)} {{{data.item_field}}}"
                 + (f": {item}" if item else "."))
    instruction = ("Given the user's and item's attributes, identify whether the user will like the target item "
                   "by answering \"Yes.\" or \"No.\"")
    return f"{ALPACA_PREAMBLE}\n\nInstruction: {escape_braces(instruction)}\n\nInput: {user_part} {item_part} Response:"


def resolve_template(data: CTRData, template: str = "auto") -> str:
    """The ``str.format`` template a ``template`` key stands for (see the module docstring)."""
    if template == "alpaca":
        return tallrec_template(data)
    if template == "sllm4ctr":
        return sllm4ctr_template(data)
    return prompt_template(data, template)


# -- the user's earlier interactions ------------------------------------------------------------------------

class InteractionHistory:
    """Per row, the user's last ``limit`` interactions strictly before it in time (same-time rows, the row itself
    and later rows never count), oldest first, split into liked (label 1) and disliked (label 0) item titles."""

    def __init__(self, data: CTRData, limit: int) -> None:
        require_user_and_item(data)
        user = np.asarray(data.X[:, data.field_index(data.user_field)], dtype=np.int64)
        ts = np.asarray(data.ts, dtype=np.int64)
        n = len(user)
        order = np.lexsort((np.arange(n), ts, user))  # by user, then time, then row
        u, t = user[order], ts[order]
        new_user = np.ones(n, dtype=bool)
        new_user[1:] = u[1:] != u[:-1]
        new_time = new_user.copy()
        new_time[1:] |= t[1:] != t[:-1]
        self._order = order
        self._user_start = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))
        self._time_start = np.maximum.accumulate(np.where(new_time, np.arange(n), 0))
        self._position = np.empty(n, dtype=np.int64)
        self._position[order] = np.arange(n)
        self._item = np.asarray(data.X[:, data.field_index(data.item_field)], dtype=np.int64)
        self._liked = np.asarray(data.y) == 1
        self._titles = item_titles(data)
        self.limit = int(limit)

    def earlier_rows(self, row: int) -> np.ndarray:
        """Row indices of the user's last ``limit`` interactions before ``row``, oldest first."""
        p = self._position[row]
        hi = self._time_start[p]
        lo = max(int(self._user_start[p]), hi - self.limit)
        return self._order[lo:hi]

    def title(self, row: int) -> str:
        i = self._item[row]
        return self._titles[i] if 0 <= i < len(self._titles) else str(i)

    def values(self, row: int) -> dict[str, str]:
        """``{liked}``, ``{disliked}`` and ``{target}`` of one row, as TALLRec writes them."""
        earlier = self.earlier_rows(row)
        liked = self._liked[earlier]
        return {LIKED: _quoted([self.title(r) for r in earlier[liked]]),
                DISLIKED: _quoted([self.title(r) for r in earlier[~liked]]),
                TARGET: _quoted([self.title(row)])}


# -- rendering ------------------------------------------------------------------------------------------------

class PromptBuilder:
    """Renders the prompt of any row of ``data``: ``template`` resolved by `resolve_template`; dataset fields and
    ``{history}`` through the core `RowTemplate`, ``{liked}``/``{disliked}``/``{target}`` through
    `InteractionHistory` (``history_items`` caps both kinds of history)."""

    def __init__(self, data: CTRData, template: str = "auto", history_items: int = 5) -> None:
        self.data = data
        self.template = resolve_template(data, template)
        names = placeholders(self.template)
        self._fields = list(dict.fromkeys(n for n in names if n not in INTERACTION_PLACEHOLDERS))
        self._rows = RowTemplate(data, _SEP.join(f"{{{n}}}" for n in self._fields), history_items=history_items,
                                 what="prompt template")
        uses_interactions = any(n in INTERACTION_PLACEHOLDERS for n in names)
        self._interactions = InteractionHistory(data, history_items) if uses_interactions else None

    def __call__(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        rows = np.asarray(rows, dtype=np.int64)
        parts = self._rows(rows) if self._fields else [""] * len(rows)
        out = []
        for row, joined in zip(rows, parts, strict=True):
            values = dict(zip(self._fields, joined.split(_SEP), strict=True)) if self._fields else {}
            if self._interactions is not None:
                values.update(self._interactions.values(int(row)))
            out.append(self.template.format(**values))
        return out
