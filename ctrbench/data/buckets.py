"""Long-tail buckets, computed by the core from ``data.user``/``data.item`` so every dataset gets them.

Two definitions, one per paper:

- ClickPrompt (Table 6): rank users (items) by how often they occur in the *train* split; the bottom
  ``tail_fraction`` (10%) are long-tail, the rest are not. Crossing user and item gives four mutually
  exclusive subsets of the evaluated split.
- SLLM4CTR: the top ``head_fraction`` (20%) of items by train frequency are "head", the rest "tail".

Ties in frequency are broken by entity index (ascending) so the buckets are deterministic and the
tail holds exactly the requested share of the ranked entities.
"""

from __future__ import annotations

import math

import numpy as np

from ctrbench.data.types import SPLITS, CTRData
from ctrbench.errors import DataError


def _split_rows(data: CTRData, split: str) -> np.ndarray:
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; expected one of {', '.join(SPLITS)}")
    return np.asarray(data.splits[split], dtype=np.int64)


def _train_counts(ids: np.ndarray, train: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    size = int(ids.max()) + 1 if len(ids) else 1
    return np.bincount(ids[train], minlength=size)


def _share(fraction: float, n: int, what: str) -> int:
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"{what} must be within [0, 1], got {fraction}")
    return int(math.floor(fraction * n + 0.5))


def _bottom(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean over entity indices: True for the bottom ``fraction`` of entities seen in train, and for unseen ones.

    Why unseen entities are tail: ClickPrompt ranks entities by train frequency, and an entity absent from
    train has frequency 0, below every ranked entity; calling it non-long-tail would contradict the
    ranking. These cold-start users/items are exactly the case the paper's long-tail analysis targets.
    The share is taken over the entities that do occur in train, so unseen ones don't shift the cut.
    """
    seen = np.flatnonzero(counts > 0)
    n_tail = _share(fraction, len(seen), "tail_fraction")
    order = seen[np.lexsort((seen, counts[seen]))]  # ascending frequency, then ascending index
    tail = counts == 0
    tail[order[:n_tail]] = True
    return tail


def _top(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean over entity indices: True for the top ``fraction`` of entities seen in train."""
    seen = np.flatnonzero(counts > 0)
    n_head = _share(fraction, len(seen), "head_fraction")
    order = seen[np.lexsort((seen, -counts[seen]))]  # descending frequency, then ascending index
    head = np.zeros(len(counts), dtype=bool)
    head[order[:n_head]] = True
    return head


def _tail_mask(ids: np.ndarray, rows: np.ndarray, train: np.ndarray, fraction: float) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    is_tail = _bottom(_train_counts(ids, train), fraction)
    return is_tail[ids[rows]]


def longtail_masks(data: CTRData, split: str = "test", tail_fraction: float = 0.1) -> dict[str, np.ndarray]:
    """ClickPrompt Table 6 buckets: boolean masks over the rows of ``split``.

    Keys: ``user_tail``, ``user_head``, ``item_tail``, ``item_head`` and the four crossings
    ``user_tail&item_tail``, ``user_tail&item_head``, ``user_head&item_tail``, ``user_head&item_head``,
    which partition the split. Long-tail = the bottom ``tail_fraction`` of users (items) ranked by train
    frequency, plus users (items) never seen in train (see ``_bottom``).
    """
    rows = _split_rows(data, split)
    train = _split_rows(data, "train")
    user_tail = _tail_mask(data.user, rows, train, tail_fraction)
    item_tail = _tail_mask(data.item, rows, train, tail_fraction)
    masks = {"user_tail": user_tail, "user_head": ~user_tail, "item_tail": item_tail, "item_head": ~item_tail}
    for u in ("user_tail", "user_head"):
        for i in ("item_tail", "item_head"):
            masks[f"{u}&{i}"] = masks[u] & masks[i]
    return masks


def headtail_item_masks(data: CTRData, split: str = "test", head_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """SLLM4CTR buckets: ``head`` = rows whose item is in the top ``head_fraction`` of items by train frequency,
    ``tail`` = every other row (items never seen in train included)."""
    rows = _split_rows(data, split)
    train = _split_rows(data, "train")
    item = np.asarray(data.item, dtype=np.int64)
    head = _top(_train_counts(item, train), head_fraction)[item[rows]]
    return {"head": head, "tail": ~head}
