"""Amazon review data, 2018 release (Ni, Li & McAuley, Justifying Recommendations using Distantly-Labeled Reviews
and Fine-Grained Aspects, EMNLP 2019), one category at a time.

Raw data, per category (``Toys_and_Games``, ``Sports_and_Outdoors``, ``Books``, …): the reviews,
``<Category>_5.json.gz`` (the published 5-core subset, default) or ``<Category>.json.gz`` (all reviews,
``reviews: full``), and the metadata ``meta_<Category>.json.gz``; gzip-compressed JSON lines. The files are
behind a request form, so there is no download here and no published checksum: the raw files' sha256 go into
the cache key.

Preprocessing: one review per (user, item), the latest (``unixReviewTime``; ties: the later line); then the
``kcore``-core (default 5) of the user-item graph, iterated until every user and item has at least k reviews
(the published 5-core files are 5-core before de-duplication, so the filter is applied again); label =
``overall`` >= 4; global temporal 8:1:1 split (``unixReviewTime`` has day resolution: same-day reviews keep
file order). Item fields from the metadata: title (HTML entities decoded), brand, category (the most specific
entry of the category path, "Jigsaw Puzzles" of Toys & Games > Puzzles > Jigsaw Puzzles); items without
metadata keep unknown values. Fields: user id, item id, title, brand, category. User history
(``history_length`` L > 0): the user's earlier liked items, most recent first.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrbench.data.prep import check_count, check_history_length, check_split, join_side, latest_core, temporal_ctr_data
from ctrbench.data.readers import read_json_lines
from ctrbench.data.types import CTRData
from ctrbench.errors import DataError
from ctrbench_datasets.base import AUTO, RawDataset

PREPROCESS_VERSION = 1
SITE = "https://nijianmo.github.io/amazon/index.html"
SHORT_NAMES = {"Toys_and_Games": "amazon-toys", "Sports_and_Outdoors": "amazon-sports"}
FIELDS = (("user_id", "user id"), ("item_id", "item id"), ("title", "title"), ("brand", "brand"),
          ("category", "category"))
REVIEWS = ("5core", "full")


def dataset_name(category: str) -> str:
    """``amazon-toys`` and ``amazon-sports`` for the two registered categories, else ``amazon-<category>``."""
    return SHORT_NAMES.get(category) or "amazon-" + re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-")


class Amazon(RawDataset):
    """One category of the Amazon 2018 reviews as a CTR task.

    ``category``: the file-name stem, e.g. ``Toys_and_Games`` (``amazon-toys``), ``Sports_and_Outdoors``
    (``amazon-sports``), ``Books``. ``source``: "auto" or a directory holding the review and metadata files.
    ``reviews``: "5core" (``<Category>_5.json.gz``) or "full" (``<Category>.json.gz``). ``kcore``: minimum
    reviews per user and per item, iterated to a fixed point (1 = no filter). ``positive_min_rating``: label =
    ``overall`` >= this. ``split``: shares of the global time order. ``history_length``: length L of each
    sample's liked-items history; 0 = none.
    """

    version = PREPROCESS_VERSION

    def __init__(self, category: str = "", source: str = AUTO, reviews: str = "5core", kcore: int = 5,
                 positive_min_rating: float = 4.0, split: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 history_length: int = 20) -> None:
        super().__init__(source)
        self.category = str(category).strip()
        self.name = dataset_name(self.category) if self.category else "amazon"
        if reviews not in REVIEWS:
            raise DataError(f"{self.name}: reviews must be one of {', '.join(REVIEWS)}, got {reviews!r}")
        self.reviews = reviews
        self.kcore = check_count(self.name, "kcore", kcore, minimum=1)
        self.positive_min_rating = float(positive_min_rating)
        self.split = check_split(self.name, split)
        self.history_length = check_history_length(self.name, history_length)
        stem = f"{self.category}_5" if reviews == "5core" else self.category
        self.reviews_file, self.meta_file = f"{stem}.json.gz", f"meta_{self.category}.json.gz"
        self.files = (self.reviews_file, self.meta_file)
        self.manual = (f"the Amazon 2018 data needs a request form: fill it in at {SITE}, then download "
                       f"{self.reviews_file} and {self.meta_file} from the links you receive")

    def check(self) -> None:
        if not self.category or "/" in self.category:
            raise DataError("amazon: set category to the file-name stem of a 2018 category, e.g. category: Books "
                            "(for Books_5.json.gz and meta_Books.json.gz); amazon-toys and amazon-sports set it")

    def config(self) -> dict[str, Any]:
        return {"category": self.category, "reviews": self.reviews, "kcore": self.kcore,
                "positive_min_rating": self.positive_min_rating, "split": list(self.split),
                "history_length": self.history_length}

    def build(self, files: dict[str, Path], workdir: Path) -> CTRData:
        reviews = read_reviews(files[self.reviews_file], f"{self.name}: {self.reviews_file}")
        reviews = latest_core(reviews, self.kcore, self.name)
        meta = read_meta(files[self.meta_file], set(reviews["item_id"]), f"{self.name}: {self.meta_file}")
        return temporal_ctr_data(self.name, join_side(reviews, meta, "item_id", self.name), FIELDS,
                                 positive_min_rating=self.positive_min_rating, split=self.split,
                                 history_length=self.history_length,
                                 description=f"Amazon 2018 {self.category} ({self.reviews_file}, {self.kcore}-core) "
                                             f"from {files[self.reviews_file].parent}")


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


def read_meta(path: Path, items: set[str], what: str) -> pd.DataFrame:
    """item_id, title, brand, category for the ``items`` that have metadata (the first record of each)."""
    df, skipped = read_json_lines(path, ["asin", "title", "brand", "category"], what=what,
                                  keep=lambda r: r.get("asin") in items)
    skipped.log(what, "lines that are not JSON objects")
    out = pd.DataFrame({"item_id": df["asin"].astype(str), "title": df["title"].map(_text),
                        "brand": df["brand"].map(_text), "category": df["category"].map(_leaf)})
    return out.drop_duplicates("item_id", keep="first").reset_index(drop=True)


def _text(value: Any) -> str:
    return " ".join(html.unescape(value).split()) if isinstance(value, str) else ""


def _leaf(value: Any) -> str:
    if isinstance(value, list):
        parts = [_text(v) for v in value if isinstance(v, str) and _text(v)]
        return parts[-1] if parts else ""
    return _text(value)
