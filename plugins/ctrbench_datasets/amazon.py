"""Amazon review data, 2018 release (Ni, Li & McAuley, Justifying Recommendations using Distantly-Labeled Reviews
and Fine-Grained Aspects, EMNLP 2019), one category at a time.

Raw data, per category (``Toys_and_Games``, ``Sports_and_Outdoors``, ``Books``, …): the reviews,
``<Category>_5.json.gz`` (the published 5-core subset, default) or ``<Category>.json.gz`` (all reviews,
``reviews: full``), and the metadata ``meta_<Category>.json.gz``; gzip-compressed JSON lines. The files are
behind a request form, so there is no download here and no published checksum: the raw files' sha256 go into
the cache key.

Preprocessing: one review per (user, item), the latest (``unixReviewTime``; ties: the later line); then the
``kcore``-core (default 5) of the user-item graph, iterated until every user and item has at least k reviews
(the published 5-core files are 5-core before de-duplication, so the filter is applied again); labels (below);
global temporal 8:1:1 split (``unixReviewTime`` has day resolution: same-day reviews keep file order).

Labels, ``labels``:

- ``rating`` (default): one sample per review, label = ``overall`` >= ``positive_min_rating`` (4).
- ``review``: CELA's protocol (CELA §5.1.1: "negatives are sampled at a 1:1 ratio", following DIN, Zhou et al.,
  KDD 2018): the task is whether the user reviews the item, so every review is a positive, and each review
  brings one negative: the same user and time with an item drawn uniformly (seeded by ``seed``) from the kept
  items that user never reviewed. The negative sits right after its positive in the time order, so both land
  in the same split unless the 8:1:1 cut falls between them. DIN also leaves each user's first review out (its
  history would be empty) and splits leave-last-out per user; CELA does not say it does either, so the
  benchmark's global temporal split is kept.

Item fields from the metadata: title (HTML entities decoded), brand, category (the most specific entry of the
category path, "Jigsaw Puzzles" of Toys & Games > Puzzles > Jigsaw Puzzles); items without metadata keep
unknown values; the first record of an item wins. ``item_text: long`` adds the text CELA pretrains its language
model on: ``categories``, the whole path ("Toys & Games > Puzzles > Jigsaw Puzzles"), and ``description``, the
metadata's description (a list of paragraphs in 2018, a string in 2014) with HTML tags removed, entities
decoded, whitespace collapsed and cut to ``description_length`` characters at a word boundary; and an item
template, so ``ctrbench.text.item_texts`` reads "title is …. brand is …. categories is …. description is ….".
Both are per-item texts (``CTRData.item_text``), not fields: ID models never see them (a description is
nearly one value per item, a second item id), the text layer reads them by name.

Fields: user id, item id, title, brand, category (item texts categories, description with ``item_text: long``). User
history (``history_length`` L > 0, default 20 as in CELA): the user's earlier positives, most recent first
(liked items with ``rating`` labels, reviewed items with ``review`` labels; sampled negatives never enter it).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrbench.data.prep import (
    assemble,
    check_count,
    check_history_length,
    check_split,
    join_side,
    latest_core,
    temporal_ctr_data,
    temporal_order,
    temporal_splits,
)
from ctrbench.data.readers import read_json_lines
from ctrbench.data.types import CTRData, TextSpec
from ctrbench.errors import DataError
from ctrbench_datasets.base import AUTO, RawDataset

# 2: `labels: review` (sampled negatives), `item_text: long` (category path, description);
# 3: those two as CTRData.item_text, no longer fields.
PREPROCESS_VERSION = 3
SITE = "https://nijianmo.github.io/amazon/index.html"
SHORT_NAMES = {"Toys_and_Games": "amazon-toys", "Sports_and_Outdoors": "amazon-sports"}
FIELDS = (("user_id", "user id"), ("item_id", "item id"), ("title", "title"), ("brand", "brand"),
          ("category", "category"))
# Per-item texts of `item_text: long` (CTRData.item_text), not model inputs.
LONG_TEXTS = ("categories", "description")
# The item text of `item_text: long`: the path replaces its own last entry (`category`), the description ends it.
LONG_ITEM_TEXT = "title is {title}. brand is {brand}. categories is {categories}. description is {description}."
REVIEWS = ("5core", "full")
LABELS = ("rating", "review")
ITEM_TEXT = ("short", "long")
PATH_SEPARATOR = " > "
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.DOTALL)


def dataset_name(category: str) -> str:
    """``amazon-toys`` and ``amazon-sports`` for the two registered categories, else ``amazon-<category>``."""
    return SHORT_NAMES.get(category) or "amazon-" + re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-")


class Amazon(RawDataset):
    """One category of the Amazon 2018 reviews as a CTR task.

    ``category``: the file-name stem, e.g. ``Toys_and_Games`` (``amazon-toys``), ``Sports_and_Outdoors``
    (``amazon-sports``), ``Books``. ``source``: "auto" or a directory holding the review and metadata files.
    ``reviews``: "5core" (``<Category>_5.json.gz``) or "full" (``<Category>.json.gz``). ``kcore``: minimum
    reviews per user and per item, iterated to a fixed point (1 = no filter). ``positive_min_rating``: label =
    ``overall`` >= this (``labels: rating``). ``split``: shares of the global time order. ``history_length``:
    length L of each sample's history of earlier positives; 0 = none. ``labels``: "rating" (label from the
    stars) or "review" (CELA: every review positive, one sampled unreviewed item per review negative).
    ``seed``: the negative sampling's seed (``labels: review``). ``item_text``: "short" (title, brand, category)
    or "long" (+ the category path and the description, CELA's item text). ``description_length``: characters
    of the description kept (``item_text: long``).
    """

    version = PREPROCESS_VERSION

    def __init__(self, category: str = "", source: str = AUTO, reviews: str = "5core", kcore: int = 5,
                 positive_min_rating: float = 4.0, split: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 history_length: int = 20, labels: str = "rating", seed: int = 42, item_text: str = "short",
                 description_length: int = 512) -> None:
        super().__init__(source)
        self.category = str(category).strip()
        self.name = dataset_name(self.category) if self.category else "amazon"
        self.reviews = self._choice("reviews", reviews, REVIEWS)
        self.kcore = check_count(self.name, "kcore", kcore, minimum=1)
        self.positive_min_rating = float(positive_min_rating)
        self.split = check_split(self.name, split)
        self.history_length = check_history_length(self.name, history_length)
        self.labels = self._choice("labels", labels, LABELS)
        self.seed = check_count(self.name, "seed", seed)
        self.item_text = self._choice("item_text", item_text, ITEM_TEXT)
        self.description_length = check_count(self.name, "description_length", description_length, minimum=1)
        self.text = TextSpec(item=LONG_ITEM_TEXT) if self.item_text == "long" else TextSpec()
        stem = f"{self.category}_5" if reviews == "5core" else self.category
        self.reviews_file, self.meta_file = f"{stem}.json.gz", f"meta_{self.category}.json.gz"
        self.files = (self.reviews_file, self.meta_file)
        self.manual = (f"the Amazon 2018 data needs a request form: fill it in at {SITE}, then download "
                       f"{self.reviews_file} and {self.meta_file} from the links you receive")

    def _choice(self, key: str, value: Any, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise DataError(f"{self.name}: {key} must be one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    def check(self) -> None:
        if not self.category or "/" in self.category:
            raise DataError("amazon: set category to the file-name stem of a 2018 category, e.g. category: Books "
                            "(for Books_5.json.gz and meta_Books.json.gz); amazon-toys and amazon-sports set it")

    def config(self) -> dict[str, Any]:
        return {"category": self.category, "reviews": self.reviews, "kcore": self.kcore,
                "positive_min_rating": self.positive_min_rating, "split": list(self.split),
                "history_length": self.history_length, "labels": self.labels, "seed": self.seed,
                "item_text": self.item_text, "description_length": self.description_length}

    def build(self, files: dict[str, Path], workdir: Path) -> CTRData:
        reviews = read_reviews(files[self.reviews_file], f"{self.name}: {self.reviews_file}")
        reviews = latest_core(reviews, self.kcore, self.name)
        long = self.item_text == "long"
        meta = read_meta(files[self.meta_file], set(reviews["item_id"]), f"{self.name}: {self.meta_file}",
                         description_length=self.description_length if long else 0)
        texts = LONG_TEXTS if long else ()
        where = f"Amazon 2018 {self.category} ({self.reviews_file}, {self.kcore}-core"
        if self.labels == "rating":
            return temporal_ctr_data(self.name, join_side(reviews, meta, "item_id", self.name), FIELDS,
                                     positive_min_rating=self.positive_min_rating, split=self.split,
                                     history_length=self.history_length, item_text=texts,
                                     description=f"{where}) from {files[self.reviews_file].parent}")
        table = with_sampled_negatives(reviews, np.random.default_rng(self.seed), self.name)
        table = join_side(table, meta, "item_id", self.name)
        table = table.iloc[temporal_order(table["timestamp"].to_numpy())].reset_index(drop=True)
        return assemble(self.name, table, FIELDS, y=table["label"].to_numpy(np.float32),
                        ts=table["timestamp"].to_numpy(np.int64), splits=temporal_splits(len(table), self.split),
                        history_length=self.history_length, history_text="recently reviewed items", item_text=texts,
                        description=f"{where}, every review positive, 1:1 sampled negatives, seed {self.seed}) "
                                    f"from {files[self.reviews_file].parent}")


def with_sampled_negatives(reviews: pd.DataFrame, rng: np.random.Generator, what: str) -> pd.DataFrame:
    """The reviews as positives (``label`` 1), each followed by one negative (``label`` 0): the same user and
    timestamp, an item drawn uniformly from the reviews' items that this user never reviewed.

    Rejection sampling: draw uniformly from all items and redraw the draws that hit a reviewed pair, which
    leaves each negative uniform over the user's unreviewed items. Items are numbered in sorted id order, so the
    draws depend on the seed and the set of reviews, not on the file's line order beyond the reviews' own order.
    """
    codes, uniques = pd.factorize(reviews["item_id"], sort=True)
    item, items, n_items = codes.astype(np.int64), np.asarray(uniques, dtype=object), len(uniques)
    user = pd.factorize(reviews["user_id"])[0].astype(np.int64)
    full = np.flatnonzero(np.bincount(user) >= n_items)
    if full.size:
        raise DataError(f"{what}: user {reviews['user_id'].iloc[np.flatnonzero(user == full[0])[0]]} reviewed "
                        "every item, so no negative can be sampled for them")
    reviewed = np.unique(user * n_items + item)  # sorted (user, item) keys
    negative = rng.integers(n_items, size=len(user))
    todo = np.arange(len(user))
    while todo.size:
        keys = user[todo] * n_items + negative[todo]
        pos = np.minimum(np.searchsorted(reviewed, keys), len(reviewed) - 1)
        todo = todo[reviewed[pos] == keys]
        negative[todo] = rng.integers(n_items, size=todo.size)
    pairs = np.empty(2 * len(user), dtype=object)  # positive, its negative, next positive, ...
    pairs[0::2] = reviews["item_id"].to_numpy(dtype=object)
    pairs[1::2] = items[negative]
    return pd.DataFrame({"user_id": np.repeat(reviews["user_id"].to_numpy(dtype=object), 2), "item_id": pairs,
                         "timestamp": np.repeat(reviews["timestamp"].to_numpy(np.int64), 2),
                         "label": np.tile(np.array([1, 0], np.float32), len(user))})


def read_reviews(path: Path, what: str) -> pd.DataFrame:
    """user_id, item_id, rating (float), timestamp (int64 seconds), in file order; incomplete reviews dropped."""

    def reduce(chunk: pd.DataFrame) -> pd.DataFrame:
        rating = pd.to_numeric(chunk["overall"], errors="coerce")
        ts = pd.to_numeric(chunk["unixReviewTime"], errors="coerce")
        ok = chunk["reviewerID"].notna() & chunk["asin"].notna() & rating.notna() & ts.notna()
        return pd.DataFrame({"user_id": chunk["reviewerID"][ok].astype(str), "item_id": chunk["asin"][ok].astype(str),
                             "rating": rating[ok].astype(np.float64), "timestamp": ts[ok].astype(np.int64)})

    df, skipped = read_json_lines(path, ["reviewerID", "asin", "overall", "unixReviewTime"], what=what,
                                  transform=reduce)
    skipped.log(what, "lines that are not JSON objects")
    return df.reset_index(drop=True)


def read_meta(path: Path, items: set[str], what: str, description_length: int = 0) -> pd.DataFrame:
    """item_id, title, brand, category for the ``items`` that have metadata (the first record of each); with
    ``description_length`` > 0 also categories (the whole path) and description (cleaned, cut to that length)."""
    keys = ["asin", "title", "brand", "category"] + (["description"] if description_length else [])

    def reduce(chunk: pd.DataFrame) -> pd.DataFrame:  # per chunk, so raw descriptions are never all held
        out = pd.DataFrame({"item_id": chunk["asin"].astype(str), "title": chunk["title"].map(_text),
                            "brand": chunk["brand"].map(_text), "category": chunk["category"].map(_leaf)})
        if description_length:
            out["categories"] = chunk["category"].map(_path)
            out["description"] = chunk["description"].map(lambda v: description_text(v, description_length))
        return out

    df, skipped = read_json_lines(path, keys, what=what, keep=lambda r: r.get("asin") in items, transform=reduce)
    skipped.log(what, "lines that are not JSON objects")
    return df.drop_duplicates("item_id", keep="first").reset_index(drop=True)


def description_text(value: Any, limit: int) -> str:
    """A metadata description as plain text: paragraphs (a list, or one string) joined by spaces, HTML tags and
    comments removed (before and after decoding entities, so escaped markup goes too), whitespace collapsed, then
    the first ``limit`` characters, cut back to the last whole word when the cut falls inside one."""
    parts = value if isinstance(value, list) else [value]
    text = " ".join(_plain(p) for p in parts if isinstance(p, str))
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if text[limit] != " " and " " in cut:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip()


def _plain(value: str) -> str:
    return _TAG.sub(" ", html.unescape(_TAG.sub(" ", value)))


def _text(value: Any) -> str:
    return " ".join(html.unescape(value).split()) if isinstance(value, str) else ""


def _leaf(value: Any) -> str:
    if isinstance(value, list):
        parts = [_text(v) for v in value if isinstance(v, str) and _text(v)]
        return parts[-1] if parts else ""
    return _text(value)


def _path(value: Any) -> str:
    """The category path as one string, "Toys & Games > Puzzles > Jigsaw Puzzles"; entries that are only markup
    (the 2018 metadata has a few, e.g. "</span></span></span>") are left out."""
    entries = value if isinstance(value, list) else [value]
    parts = [" ".join(_plain(v).split()) for v in entries if isinstance(v, str)]
    return PATH_SEPARATOR.join(p for p in parts if p)
