"""Preprocessing shared by the datasets built from raw interaction files (MovieLens, BookCrossing, Amazon, GoodReads).

The steps the papers describe, each written once:

- ``dedupe_latest``: one row per (user, item), the latest (ties: the later row in the file);
- ``kcore``: drop users and items with fewer than k interactions, repeated until none is left (a fixed point:
  dropping an item can push a user under k, so one pass is not enough);
- ``temporal_order`` + ``temporal_splits``: rows sorted by time (stably, so same-second rows keep file order)
  and cut 8:1:1 globally; ``random_splits`` where a dataset has no timestamps (BookCrossing);
- ``frequency_vocab``: per field, index 0 = "unknown" (the empty value) and the other values numbered by
  frequency over all kept rows (descending, ties by value), so indices do not depend on file order;
- ``assemble``: a canonical table (one row per sample, one string column per field) into ``CTRData``, with
  the user history of ``ctrbench.data.history`` when asked for; ``temporal_ctr_data`` labels, sorts and splits a
  table by time first, ``latest_core`` chains de-duplication and the k-core.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ctrbench.data.history import user_history
from ctrbench.data.types import SPLITS, CTRData, Field
from ctrbench.errors import DataError

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
FieldSpec = tuple[str, str]  # (column name, text name)


# -- config checks shared by the dataset constructors -------------------------------------------------------

def check_split(name: str, split: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative shares with a positive sum (a YAML list is fine), else a DataError naming the dataset."""
    try:
        shares = tuple(float(s) for s in split)
    except (TypeError, ValueError):
        raise DataError(f"{name}: split must be three non-negative shares, got {split!r}") from None
    if len(shares) != 3 or any(not math.isfinite(s) or s < 0 for s in shares) or sum(shares) <= 0:
        raise DataError(f"{name}: split must be three non-negative shares, got {split!r}")
    return shares  # type: ignore[return-value]


def check_history_length(name: str, value: Any) -> int:
    """The length L of the user-history sequences: a non-negative integer (0 = no history)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 0:
        raise DataError(f"{name}: history_length must be a non-negative integer, got {value!r}")
    return int(value)


def check_count(name: str, key: str, value: Any, minimum: int = 0) -> int:
    """An integer config value >= ``minimum`` (``2.0`` from YAML is fine, ``2.5`` is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise DataError(f"{name}: {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# -- rows ---------------------------------------------------------------------------------------------------

def dedupe_latest(df: pd.DataFrame, keys: Sequence[str], ts: str | None = None) -> pd.DataFrame:
    """One row per ``keys``: the one with the largest ``ts`` (ties, or no ``ts``: the last in the file).

    Rows keep their file order; the index is reset.
    """
    df = df.reset_index(drop=True)
    if ts is None:
        keep = ~df.duplicated(subset=list(keys), keep="last")
        return df[keep].reset_index(drop=True)
    order = np.argsort(df[ts].to_numpy(), kind="stable")
    dup = df.iloc[order].duplicated(subset=list(keys), keep="last").to_numpy()
    kept = np.sort(order[~dup])
    return df.iloc[kept].reset_index(drop=True)


def kcore(df: pd.DataFrame, user: str, item: str, k: int) -> pd.DataFrame:
    """The rows of the k-core: every remaining user and item has at least ``k`` rows.

    Users and items under ``k`` are dropped together, then counted again, until nothing changes (the
    k-core is unique, so the order of removals does not matter). Rows keep their order; the index is reset.
    """
    df = df.reset_index(drop=True)
    if k <= 1 or df.empty:
        return df
    u, n_users = _codes(df[user])
    i, n_items = _codes(df[item])
    keep = np.ones(len(df), dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        user_count = np.bincount(u[keep], minlength=n_users)
        item_count = np.bincount(i[keep], minlength=n_items)
        now = keep & (user_count[u] >= k) & (item_count[i] >= k)
        if now.sum() == keep.sum():
            break
        keep = now
    log.info("%d-core: %d of %d rows kept after %d rounds", k, int(keep.sum()), len(df), rounds)
    return df[keep].reset_index(drop=True)


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes.astype(np.int64), len(uniques)


def temporal_order(ts: np.ndarray | pd.Series) -> np.ndarray:
    """Row order by time; rows with the same time keep their file order (a stable sort)."""
    return np.argsort(np.asarray(ts), kind="stable")


def split_bounds(n: int, shares: Sequence[float]) -> tuple[int, int]:
    """End of train and end of valid for ``n`` ordered rows (floor of the cumulative shares)."""
    total = float(sum(shares))
    b1 = int(np.floor(n * shares[0] / total + 1e-9))
    b2 = int(np.floor(n * (shares[0] + shares[1]) / total + 1e-9))
    return b1, b2


def temporal_splits(n: int, shares: Sequence[float]) -> dict[str, np.ndarray]:
    """Train/valid/test as consecutive row ranges of ``n`` time-ordered rows."""
    b1, b2 = split_bounds(n, shares)
    return {"train": np.arange(0, b1, dtype=np.int64), "valid": np.arange(b1, b2, dtype=np.int64),
            "test": np.arange(b2, n, dtype=np.int64)}


def random_splits(n: int, shares: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Train/valid/test as a seeded random partition of ``n`` rows (sorted row indices in each split)."""
    perm = np.random.default_rng(seed).permutation(n)
    b1, b2 = split_bounds(n, shares)
    return {"train": np.sort(perm[:b1]), "valid": np.sort(perm[b1:b2]), "test": np.sort(perm[b2:])}


def join_side(rows: pd.DataFrame, side: pd.DataFrame, key: str, what: str) -> pd.DataFrame:
    """Left-join side features (one row per ``key``) onto ``rows``; values absent from ``side`` become ""."""
    if side[key].duplicated().any():
        raise DataError(f"{what}: duplicate {key} values in the side table")
    out = rows.merge(side, on=key, how="left", sort=False)
    if len(out) != len(rows):
        raise DataError(f"{what}: joining side features changed the row count")
    return out


# -- fields -------------------------------------------------------------------------------------------------

def frequency_vocab(values: pd.Series) -> tuple[list[str], np.ndarray]:
    """``(vocab, codes)``: index 0 = unknown (the empty value); the rest by frequency, descending, ties by value."""
    counts = values[values != ""].value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = [UNKNOWN] + [v for v, _ in ordered]
    codes = pd.Index(vocab[1:]).get_indexer(values).astype(np.int64) + 1  # -1 (the empty value) → 0
    return vocab, codes


def encode_fields(table: pd.DataFrame,
                  specs: Sequence[FieldSpec]) -> tuple[list[Field], np.ndarray, dict[str, list[str]]]:
    """One categorical field per ``(column, text name)``: ``(fields, X int64[N, F], vocab)``."""
    fields, columns, vocab = [], [], {}
    for name, text_name in specs:
        values, codes = frequency_vocab(table[name].fillna("").astype(str))
        vocab[name] = values
        fields.append(Field(name, "categorical", len(values), text_name))
        columns.append(codes)
    X = np.stack(columns, axis=1) if columns else np.zeros((len(table), 0), np.int64)
    return fields, X, vocab


def assemble(name: str, table: pd.DataFrame, specs: Sequence[FieldSpec], *, y: np.ndarray, ts: np.ndarray,
             splits: dict[str, np.ndarray], history_length: int = 0, history_text: str = "recently liked items",
             user_field: str = "user_id", item_field: str = "item_id", description: str = "",
             item_text: Sequence[str] = ()) -> CTRData:
    """A canonical table, in final row order, into ``CTRData``.

    ``table`` has one string column per field in ``specs`` (missing values "" or NaN); ``y``, ``ts`` and
    ``splits`` are in the same row order. With ``history_length`` L > 0, ``sequences["history"]`` holds each
    sample's user's earlier liked items (label 1, strictly earlier ``ts``), most recent first, in
    ``item_field`` indices (``ctrbench.data.history``). ``item_text``: columns that become per-item texts
    (``CTRData.item_text``, the value on each item's first row), not fields.
    """
    fields, X, vocab = encode_fields(table, specs)
    names = [f.name for f in fields]
    u = X[:, names.index(user_field)].copy()
    i = X[:, names.index(item_field)].copy()
    y = np.asarray(y, dtype=np.float32)
    ts = np.asarray(ts, dtype=np.int64)
    n = len(table)
    log.info("%s: %d samples, %.1f%% positive, split %s", name, n, 100 * y.mean() if n else 0.0,
             {s: len(splits[s]) for s in SPLITS})
    sequences, sequence_fields = {}, []
    if history_length > 0:
        sequences["history"] = user_history(u, ts, y, i, history_length)
        sequence_fields.append(Field("history", "sequence", len(vocab[item_field]), history_text, shares=item_field))
    return CTRData(name=name, fields=fields, X=X, y=y, ts=ts, user=u, item=i, splits=splits, vocab=vocab,
                   sequences=sequences, sequence_fields=sequence_fields, user_field=user_field,
                   item_field=item_field, description=description,
                   item_text=per_item_texts(table, item_text, i, len(vocab[item_field])))


def per_item_texts(table: pd.DataFrame, columns: Sequence[str], item: np.ndarray, n_items: int) -> dict[str, list[str]]:
    """``{column: text of each item index}`` from each item's first row (index 0 and absent items: ""; an empty
    value reads `UNKNOWN`, as a field's missing value does)."""
    present, first = np.unique(item, return_index=True)
    out = {}
    for name in columns:
        values = table[name].iloc[first].fillna("").astype(str).to_numpy(dtype=object)
        texts = [""] * n_items
        for index, value in zip(present, values, strict=True):
            if index != 0:
                texts[int(index)] = value or UNKNOWN
        out[name] = texts
    return out


def latest_core(rows: pd.DataFrame, k: int, what: str) -> pd.DataFrame:
    """Interactions (``user_id``, ``item_id``, ``timestamp``, …): the latest row per pair, then the k-core."""
    rows = kcore(dedupe_latest(rows, ["user_id", "item_id"], ts="timestamp"), "user_id", "item_id", k)
    if rows.empty:
        raise DataError(f"{what}: no interaction is left after the {k}-core filter")
    return rows


def temporal_ctr_data(name: str, table: pd.DataFrame, specs: Sequence[FieldSpec], *, positive_min_rating: float,
                      split: Sequence[float], history_length: int = 0, history_text: str = "recently liked items",
                      description: str = "", item_text: Sequence[str] = ()) -> CTRData:
    """A table with ``rating`` and ``timestamp`` columns → label = rating >= threshold, rows sorted by time
    (stably), global temporal split, ``assemble``."""
    table = table.iloc[temporal_order(table["timestamp"].to_numpy())].reset_index(drop=True)
    y = (table["rating"].to_numpy() >= positive_min_rating).astype(np.float32)
    return assemble(name, table, specs, y=y, ts=table["timestamp"].to_numpy(np.int64),
                    splits=temporal_splits(len(table), split), history_length=history_length,
                    history_text=history_text, description=description, item_text=item_text)
