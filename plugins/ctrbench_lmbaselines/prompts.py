"""The prompts of P5 and LlamaRec, rendered with `ctrbench_sllm4ctr.prompts` (TallRec's machinery).

P5 (``template: p5``; Geng et al. 2022, ``src/all_amazon_templates.py`` of its code): P5 names users and items by
id tokens (``user_23``, ``item_7``) and puts spaces before punctuation. Its rating family asks Yes/No questions
("Will user_{} give item_{} a {}-star rating ?", prompt 1-3) and like/dislike ones with like = 4-5 stars
(prompt 1-4, "Does user_{} like or dislike item_{} ?"), which is exactly the click label of the MovieLens
datasets here. The CTR question is the Yes/No form with "like" for the star clause,
``"Will user_<u> like item_<i> ?"``, after one line per side with the user's and the item's features as
"<label> is <value>." phrases (P5's metadata-personalised prompts name the user's description and the item's
title; a CTR dataset's user- and item-side fields are those), lines joined by P5's ``" \\n "``:

    user_1 : age is 24. gender is M. occupation is technician. zip code is 85711. \\n item_10 : title is Toy
    Story. release year is 1995. genres is Animation. \\n Will user_1 like item_10 ?

``template: p5_id`` is the question alone (ids only: the prompt P5's ID-based rating prompts give).

LlamaRec (``template: llamarec``; Yue et al. 2023, ``dataloader/llm.py``, ``config.py`` of its code): LlamaRec's
short Alpaca frame (``### Instruction:`` / ``### Input:`` / ``### Response:``), its history format (the last
``history_items`` (20) interactions in chronological order as ``"(1) <title> \\n (2) <title>"``), the target item
in place of its candidate pool, and, as SLLM4CTR ran it for CTR, the ID model's predicted click probability:

    ### Instruction:
    Given the user history in chronological order and a CTR model's click probability, identify whether the user
    will like the target movie by answering "Yes." or "No.".

    ### Input:
    User history: (1) Film D (1991) \\n (2) Film E (1992); \\n Target movie: "Film N (1992)"; \\n Click
    probability predicted by a CTR model: 0.73

    ### Response:

The history counts every earlier interaction (LlamaRec's sequences are implicit feedback, every rating kept),
strictly before the row in time (`InteractionHistory`: the row itself, same-second and later rows never appear).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctrbench.data.types import CTRData
from ctrbench.errors import DataError
from ctrbench.text.templates import item_side_fields, label, user_side_fields
from ctrbench_lmbaselines.config import HISTORY_PLACEHOLDER, SCORE_PLACEHOLDER
from ctrbench_sllm4ctr.prompts import (
    InteractionHistory,
    PromptBuilder,
    escape_braces,
    item_noun,
    require_user_and_item,
    resolve_template,
)

# Stand-ins for this module's placeholders while `PromptBuilder` renders the rest (no braces: not placeholders).
_SCORE, _HISTORY = "\x1e" + SCORE_PLACEHOLDER + "\x1e", "\x1e" + HISTORY_PLACEHOLDER + "\x1e"
#: What LlamaRec's frame (and the frames it borrows) say about the ID model's estimate.
SCORE_LINE = f"Click probability predicted by a CTR model: {{{SCORE_PLACEHOLDER}}}"
NO_INTERACTIONS = "none"


def _key_fields(data: CTRData) -> None:
    require_user_and_item(data, "the P5 and LlamaRec prompts")


# -- P5 ---------------------------------------------------------------------------------------------------------

def p5_question(data: CTRData) -> str:
    """``"Will user_{<user field>} like item_{<item field>} ?"``: P5's Yes/No rating question."""
    _key_fields(data)
    return f"Will user_{{{data.user_field}}} like item_{{{data.item_field}}} ?"


def p5_template(data: CTRData, template: str = "p5") -> str:
    """The ``str.format`` template a P5 ``template`` key stands for (module docstring); other names and format
    strings go through `ctrbench_sllm4ctr.prompts.resolve_template`."""
    if template == "p5_id":
        return p5_question(data)
    if template != "p5":
        return resolve_template(data, template)
    question = p5_question(data)

    def phrases(names: list[str]) -> str:
        return " ".join(f"{escape_braces(label(data, data.fields[data.field_index(n)]))} is {{{n}}}." for n in names)

    lines = []
    for key, names in ((f"user_{{{data.user_field}}}", user_side_fields(data)),
                       (f"item_{{{data.item_field}}}", item_side_fields(data))):
        if names:
            lines.append(f"{key} : {phrases(names)}")
    return " \n ".join([*lines, question])


# -- LlamaRec -----------------------------------------------------------------------------------------------

def llamarec_template(data: CTRData, template: str = "llamarec") -> str:
    """The ``str.format`` template of a LlamaRec ``template`` key, with ``{ctr_score}`` (and, for "llamarec",
    ``{user_history}``): LlamaRec's frame, or TallRec's / SLLM4CTR's prompt with `SCORE_LINE` before the response."""
    noun = item_noun(data)
    if template == "llamarec":
        instruction = ("Given the user history in chronological order and a CTR model's click probability, identify "
                       f"whether the user will like the target {noun} by answering \"Yes.\" or \"No.\".")
        task = (f"User history: {{{HISTORY_PLACEHOLDER}}}; \n Target {noun}: {{target}}; \n {SCORE_LINE}")
        return f"### Instruction:\n{escape_braces(instruction)}\n\n### Input:\n{task}\n\n### Response:\n"
    if template in ("alpaca", "sllm4ctr"):
        base = resolve_template(data, template)
        cue = "\n\n### Response:\n" if template == "alpaca" else " Response:"
        head, found, tail = base.rpartition(cue)
        if not found:  # the frames of ctrbench_sllm4ctr.prompts end with their cue; a change there lands here
            raise DataError(f"LlamaRec: the {template!r} prompt no longer ends with {cue!r}; cannot place the score")
        glue = "\n" if template == "alpaca" else " "
        return f"{head}{glue}{SCORE_LINE}{'' if template == 'alpaca' else '.'}{cue}{tail}"
    return template


def format_score(p: float, digits: int) -> str:
    """The click probability as the prompt writes it: ``digits`` decimals (``0.73``)."""
    return f"{p:.{digits}f}"


class LlamaRecPrompts:
    """Renders LlamaRec's prompt of any row: the template's fields, ``{history}``, ``{liked}``, ``{disliked}``
    and ``{target}`` through `PromptBuilder`; ``{user_history}`` (LlamaRec's numbered history) and
    ``{ctr_score}`` (``scores[row]``, formatted) here. ``scores``: the ID model's click probability of every
    dataset row."""

    def __init__(self, data: CTRData, template: str, history_items: int, scores: np.ndarray,
                 score_digits: int = 2) -> None:
        self.scores = np.asarray(scores, dtype=np.float64)
        if self.scores.shape != (data.num_samples,):
            raise ValueError(f"LlamaRec: {self.scores.shape} scores for {data.num_samples} rows")
        self.digits = score_digits
        resolved = llamarec_template(data, template)
        self.template = resolved
        self._uses_history = f"{{{HISTORY_PLACEHOLDER}}}" in resolved
        escaped = resolved.replace(f"{{{SCORE_PLACEHOLDER}}}", _SCORE).replace(f"{{{HISTORY_PLACEHOLDER}}}", _HISTORY)
        self._builder = PromptBuilder(data, escaped, history_items)
        self._interactions = InteractionHistory(data, history_items) if self._uses_history else None

    def user_history(self, row: int) -> str:
        """``"(1) <title> \\n (2) <title>"``: the user's last ``history_items`` interactions before ``row``."""
        assert self._interactions is not None
        titles = [self._interactions.title(int(r)) for r in self._interactions.earlier_rows(row)]
        return " \n ".join(f"({k}) {t}" for k, t in enumerate(titles, start=1)) or NO_INTERACTIONS

    def __call__(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        rows = np.asarray(rows, dtype=np.int64)
        out = []
        for row, text in zip(rows, self._builder(rows), strict=True):
            text = text.replace(_SCORE, format_score(self.scores[row], self.digits))
            if self._uses_history:
                text = text.replace(_HISTORY, self.user_history(int(row)))
            out.append(text)
        return out
