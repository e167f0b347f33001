"""Item-level views of a dataset for CELA: item tokens, item feature indices, popularity, history field.

CELA works on items, not rows (its item-level alignment is what makes it cheap), so every stage indexes items
by the item field's index (0 = unknown, never aligned or encoded).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ctrbench.context import RunContext
from ctrbench.data.types import CTRData
from ctrbench.text import TokenTable, item_side_fields, item_texts, token_cache_key


def num_items(data: CTRData) -> int:
    """Size of the item field's index space (index 0 included)."""
    return int(data.fields[data.field_index(data.item_field)].vocab_size)


def align_field_names(data: CTRData, which: str) -> list[str]:
    """The fields whose embeddings form e_iⁿ (Eq. 8): the item id, then (``item_side``) every categorical field
    that is constant per item (genres, year, ...), in dataset order."""
    if which == "item_id":
        return [data.item_field]
    side = set(item_side_fields(data))
    return [data.item_field, *[f.name for f in data.fields if f.name in side]]


def item_feature_index(data: CTRData, fields: list[str]) -> np.ndarray:
    """int64[V, len(fields)]: per item index, the index of each field on its first row (0 for unseen items).

    Item-side fields are constant per item, so any row gives the same values; the item column is the item index
    itself."""
    cols = [data.field_index(f) for f in fields]
    item_col = data.field_index(data.item_field)
    out = np.zeros((num_items(data), len(fields)), dtype=np.int64)
    items = np.asarray(data.X[:, item_col], dtype=np.int64)
    present, first = np.unique(items, return_index=True)
    out[present] = np.asarray(data.X[first][:, cols], dtype=np.int64)
    out[:, fields.index(data.item_field)] = np.arange(len(out))
    return out


def train_popularity(data: CTRData) -> np.ndarray:
    """int64[V]: training rows per item index (Fig. 5's popularity)."""
    items = np.asarray(data.X[np.asarray(data.splits["train"]), data.field_index(data.item_field)], dtype=np.int64)
    return np.bincount(items, minlength=num_items(data)).astype(np.int64)


def popular_items(data: CTRData, fraction: float) -> torch.Tensor:
    """Sorted item indices (≥ 1) of the top ``fraction`` of items by training rows (ties: lower index first),
    as the authors' ``rank(method="first") <= fraction · #items``; every item for ``fraction`` = 1."""
    pop = train_popularity(data)[1:]
    k = len(pop) if fraction >= 1 else int(np.floor(fraction * len(pop)))
    order = np.lexsort((np.arange(len(pop)), -pop))  # by popularity descending, then index
    return torch.from_numpy(np.sort(order[:max(k, 1)] + 1).astype(np.int64))


def history_field(data: CTRData) -> str | None:
    """The user-history sequence field sharing the item table (as ``find_history_field`` requires), or None."""
    for f in data.sequence_fields:
        if f.name == "history" and f.shares == data.item_field and f.name in data.sequences:
            return f.name
    for f in data.sequence_fields:
        if f.shares == data.item_field and f.name in data.sequences:
            return f.name
    return None


def item_tokens(ctx: RunContext, plm: Any, max_length: int) -> TokenTable:
    """Every item's text (`item_texts`: the item-side fields as "label is value." phrases), tokenized once per
    (data, tokenizer, length): a cached stage shared by every CELA stage and suite."""
    key = token_cache_key(ctx.data, plm, texts="item", max_length=max_length)
    stage = ctx.stage("text-tokens", key,
                      lambda d: TokenTable.from_texts(item_texts(ctx.data), plm, max_length, key=key).save(d))
    return TokenTable.load(stage, key=key)


def text_length(plm: Any, max_length: int) -> int:
    """``max_length`` clamped to the PLM's positions (the authors' 256 exceeds the test model's 128)."""
    limit = getattr(plm, "max_text_length", None)
    return min(int(max_length), int(limit)) if isinstance(limit, int) else int(max_length)
