"""User behaviour histories for sequence CTR models (DIN, DIEN): each sample's previously liked items.

The history of sample ``i`` (user ``u``, time ``t``) is the items of ``u``'s samples ``j`` with ``y[j] = 1``
and ``ts[j] < t`` — strictly earlier, so nothing from the same moment or the future leaks in — most recent
first (ties in time among those earlier positives: the later row first), truncated to ``length`` and
zero-padded at the end. Labels of earlier rows are used whatever split they are in: a test sample sees the
user's positives up to its own time, which is what a deployed model would see.

Vectorised: one sort by (user, ts, row) and, per sample, the range of the user's earlier positives in the
sorted positive list; the ``[N, L]`` table is then filled in row chunks (``out`` may be a memmap).
"""

from __future__ import annotations

import numpy as np

__all__ = ["user_history", "history_ranges"]


def history_ranges(user: np.ndarray, ts: np.ndarray, y: np.ndarray,
                   item: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lo, hi, liked)``: sample ``i``'s history is ``liked[hi[i] - 1], liked[hi[i] - 2], …, liked[lo[i]]``.

    ``liked`` holds the items of all positive samples sorted by (user, ts, row); ``[lo[i], hi[i])`` is the
    slice of it that belongs to ``i``'s user and is strictly earlier than ``ts[i]``. All arrays are in row
    order (int64[N]) except ``liked`` (int64[number of positives]).
    """
    user, ts = np.asarray(user, dtype=np.int64), np.asarray(ts, dtype=np.int64)
    positive = np.asarray(y) == 1
    n = len(user)
    order = np.lexsort((np.arange(n), ts, user))  # by user, then ts, then row
    u, t, pos = user[order], ts[order], positive[order]
    before = np.concatenate([[0], np.cumsum(pos, dtype=np.int64)])  # positives in sorted[:k]
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = u[1:] != u[:-1]
    new_tie = new_user.copy()  # first row of each (user, ts) group
    new_tie[1:] |= t[1:] != t[:-1]
    user_start = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))
    tie_start = np.maximum.accumulate(np.where(new_tie, np.arange(n), 0))
    lo, hi = np.empty(n, np.int64), np.empty(n, np.int64)
    lo[order] = before[user_start]  # the user's first positive
    hi[order] = before[tie_start]  # positives strictly before this (user, ts) group
    liked = np.asarray(item, dtype=np.int64)[order][pos]
    return lo, hi, liked


def user_history(user: np.ndarray, ts: np.ndarray, y: np.ndarray, item: np.ndarray, length: int,
                 out: np.ndarray | None = None, chunk_size: int = 1 << 18) -> np.ndarray:
    """int64[N, length]: each sample's earlier positive items, most recent first, 0-padded (see the module doc).

    ``item`` must hold embedding indices (never 0 for a real item, since 0 is padding). ``out``: an
    ``int64[N, length]`` array to fill (e.g. a memmap in the cache being built), written ``chunk_size``
    rows at a time so only O(N) working memory is needed beyond it.
    """
    n, length = len(user), int(length)
    if length < 0:
        raise ValueError(f"history length must be >= 0, got {length}")
    lo, hi, liked = history_ranges(user, ts, y, item)
    liked = np.concatenate([liked, [0]])  # index len(liked) - 1 + 1 = padding
    pad = len(liked) - 1
    out = np.zeros((n, length), np.int64) if out is None else out
    steps = np.arange(length, dtype=np.int64)
    for start in range(0, n, chunk_size):
        s = slice(start, min(n, start + chunk_size))
        idx = hi[s, None] - 1 - steps  # most recent first
        idx = np.where(idx >= lo[s, None], idx, pad)
        out[s] = liked[idx]
    return out
