"""Prompts for Yes/No CTR prediction: the dataset's own prompt template (``data.text.prompt``, e.g. MovieLens's, with
user and item ids as SLLM4CTR and TallRec include them, the user's most recent liked items by name, and a question
ending in "Answer:" so the next token is the answer), else a generic one. A suite can pass its own template
(``method.template``) with ``{field}`` placeholders. Rendering is core code (`ctrbench.text.RowTemplate`).
"""

from __future__ import annotations

from ctrbench.data.types import CTRData
from ctrbench.text.templates import YES_NO_QUESTION, RowTemplate, generic_prompt, placeholders, prompt_template

QUESTION = YES_NO_QUESTION
generic_template = generic_prompt
template_for = prompt_template

__all__ = ["QUESTION", "PromptBuilder", "generic_template", "placeholders", "template_for"]


class PromptBuilder(RowTemplate):
    """Renders the prompt of any row of ``data``; ``history_items`` caps how many liked items are named."""

    def __init__(self, data: CTRData, template: str = "auto", history_items: int = 5) -> None:
        super().__init__(data, prompt_template(data, template), history_items=history_items, what="prompt template")
