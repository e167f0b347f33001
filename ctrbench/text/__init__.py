"""The text layer: what every method that reads samples as text shares.

- `templates`: row, item and user texts and Yes/No prompts from a dataset's metadata (its ``data.text``
  templates and labels, else "label is value." phrases of the fields the data shows to be item- or user-side);
- `tokens`: `TokenTable`, texts tokenized once into compact arrays, keyed by `token_cache_key`, gathered per
  batch onto the device;
- `masking`: BERT-style MLM corruption (`mask_tokens`);
- `contrastive`: `info_nce` (symmetric, in-batch negatives) and `simcse_loss` (dropout positives).

See docs/text.md.
"""

from ctrbench.data.types import TextSpec
from ctrbench.text.contrastive import info_nce, simcse_loss, similarity_logits
from ctrbench.text.masking import IGNORE, mask_tokens, maskable
from ctrbench.text.templates import (
    NAME_FIELDS,
    NO_HISTORY,
    YES_NO_QUESTION,
    RowTemplate,
    clear_cache,
    generic_prompt,
    history_names,
    item_name_field,
    item_names,
    item_side_fields,
    item_texts,
    label,
    phrase,
    placeholders,
    prompt_template,
    render_row,
    render_rows,
    row_texts,
    user_side_fields,
    user_texts,
)
from ctrbench.text.tokens import TokenTable, id_dtype, token_cache_key, tokenizer_identity, tokenizer_of

__all__ = [
    "IGNORE", "NAME_FIELDS", "NO_HISTORY", "YES_NO_QUESTION", "RowTemplate", "TextSpec", "TokenTable", "clear_cache",
    "generic_prompt", "history_names", "id_dtype", "info_nce", "item_name_field", "item_names", "item_side_fields",
    "item_texts", "label", "mask_tokens", "maskable", "phrase", "placeholders", "prompt_template", "render_row",
    "render_rows", "row_texts", "similarity_logits", "simcse_loss", "token_cache_key", "tokenizer_identity",
    "tokenizer_of", "user_side_fields", "user_texts",
]
