"""Book-Crossing (Ziegler et al., Improving Recommendation Lists Through Topic Diversification, WWW 2005), as
ClickPrompt preprocesses it.

Raw data: ``BX-Book-Ratings.csv``, ``BX-Books.csv``, ``BX-Users.csv`` from ``BX-CSV-Dump.zip``: ``;``-separated,
every field ``"``-quoted (fields may hold ``;``), latin-1. ``BX-Books.csv`` has lines with a backslash before
a closing quote (``...Readers)\\";James Buckley";...``) that split into the wrong number of fields; they are
skipped and counted (logged, and recorded in the dataset's description), never guessed at. The official
download (Freiburg) publishes no checksum, so none is pinned: the raw files' sha256 go into the cache key.

Preprocessing: explicit ratings only (rating 0 is an implicit "interaction" and is dropped), label = rating
>= 5 (ClickPrompt, on the 1-10 scale); one rating per (user, ISBN), the last in the file; ISBNs are trimmed
and upper-cased on both sides (``034545104x`` = ``034545104X``); ``NULL`` ages and publication years that are
0 or not a number are unknown; HTML entities in titles (``&amp;``) are decoded. **Book-Crossing has no
timestamps**, so the 8:1:1 split is random, seeded by ``seed``, as in ClickPrompt; ``ts`` is 0 for every row
and there is no user history (a history needs an order of events). Fields, in ClickPrompt's order: user id,
location, age, ISBN, book title, book author, year of publication, publisher.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrbench.data.prep import assemble, check_count, check_split, dedupe_latest, join_side, random_splits
from ctrbench.data.readers import read_quoted_csv
from ctrbench.data.sources import DataSource, UrlSource
from ctrbench.data.types import CTRData
from ctrbench.errors import DataError
from ctrbench_datasets.base import AUTO, RawDataset

NAME = "bookcrossing"
PREPROCESS_VERSION = 1
URL = "http://www2.informatik.uni-freiburg.de/~cziegler/BX/BX-CSV-Dump.zip"  # no published checksum

RATINGS, BOOKS, USERS = "BX-Book-Ratings.csv", "BX-Books.csv", "BX-Users.csv"
FIELDS = (("user_id", "user id"), ("location", "location"), ("age", "age"), ("item_id", "ISBN"),
          ("title", "book title"), ("author", "book author"), ("year", "year of publication"),
          ("publisher", "publisher"))
_RENAME = {"User-ID": "user_id", "ISBN": "item_id", "Book-Rating": "rating", "Location": "location", "Age": "age",
           "Book-Title": "title", "Book-Author": "author", "Year-Of-Publication": "year", "Publisher": "publisher"}
_COLUMNS = {RATINGS: ("User-ID", "ISBN", "Book-Rating"), USERS: ("User-ID", "Location", "Age"),
            BOOKS: ("ISBN", "Book-Title", "Book-Author", "Year-Of-Publication", "Publisher")}
_UNKNOWN = {"", "null", "n/a"}


class BookCrossing(RawDataset):
    """Book-Crossing as a CTR task (ClickPrompt preprocessing, random seeded split: no timestamps).

    ``source``: "auto", "download" or a directory holding the three CSV files or ``BX-CSV-Dump.zip``.
    ``positive_min_rating``: label = rating >= this (1-10 scale). ``explicit_only``: drop the implicit
    rating 0. ``split``: train/valid/test shares of a random permutation drawn with ``seed``.
    ``download_timeout``: seconds before an unresponsive download fails.
    """

    name = NAME
    version = PREPROCESS_VERSION
    files = (RATINGS, BOOKS, USERS)
    archive = "BX-CSV-Dump.zip"
    manual = ("the original site (http://www2.informatik.uni-freiburg.de/~cziegler/BX/) may be offline: get "
              "BX-CSV-Dump.zip or its three CSV files from a mirror of the original dump")

    def __init__(self, source: str = AUTO, positive_min_rating: int = 5, explicit_only: bool = True,
                 split: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 42,
                 download_timeout: float = 30.0) -> None:
        super().__init__(source)
        self.positive_min_rating = positive_min_rating
        self.explicit_only = bool(explicit_only)
        self.split = check_split(NAME, split)
        self.seed = check_count(NAME, "seed", seed)
        self.download_timeout = float(download_timeout)

    def download(self) -> DataSource | None:
        return UrlSource(URL, self.archive, None, timeout=self.download_timeout)

    def config(self) -> dict[str, Any]:
        return {"positive_min_rating": self.positive_min_rating, "explicit_only": self.explicit_only,
                "split": list(self.split), "seed": self.seed}

    def build(self, files: dict[str, Path], workdir: Path) -> CTRData:
        ratings, users, books, skipped = read_raw(files)
        if self.explicit_only:
            ratings = ratings[ratings["rating"] != 0]
        ratings = dedupe_latest(ratings, ["user_id", "item_id"])
        table = join_side(join_side(ratings, users, "user_id", NAME), books, "item_id", NAME)
        y = (table["rating"].to_numpy() >= self.positive_min_rating).astype(np.float32)
        n = len(table)
        notes = "; ".join(f"{count} malformed lines of {name} skipped" for name, count in skipped.items() if count)
        return assemble(NAME, table, FIELDS, y=y, ts=np.zeros(n, np.int64),
                        splits=random_splits(n, self.split, self.seed), history_length=0,
                        description=f"Book-Crossing from {files[RATINGS].parent} (no timestamps: random split, "
                                    f"seed {self.seed})" + (f"; {notes}" if notes else ""))


def read_raw(files: dict[str, Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(ratings, users, books, skipped line counts per file), cleaned as the module docstring says."""
    tables, skipped = {}, {}
    for name, columns in _COLUMNS.items():
        df, lines = read_quoted_csv(files[name], what=f"{NAME}: {name}")
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(f"{NAME}: {name}: the header lacks {', '.join(missing)} (it has {', '.join(df.columns)})")
        lines.log(f"{NAME}: {name}", "malformed lines")
        tables[name], skipped[name] = df.rename(columns=_RENAME), lines.count
    ratings, users, books = tables[RATINGS], tables[USERS], tables[BOOKS]
    rating = pd.to_numeric(ratings["rating"].str.strip(), errors="coerce")
    bad = int(rating.isna().sum())
    if bad:
        raise DataError(f"{NAME}: {RATINGS}: {bad} ratings are not numbers")
    ratings = pd.DataFrame({"user_id": ratings["user_id"].str.strip(), "item_id": _isbn(ratings["item_id"]),
                            "rating": rating.astype(np.int64)})
    users = pd.DataFrame({"user_id": users["user_id"].str.strip(), "location": users["location"].map(_clean),
                          "age": users["age"].map(_clean)})
    books = pd.DataFrame({"item_id": _isbn(books["item_id"]), "title": books["title"].map(_text),
                          "author": books["author"].map(_text), "year": books["year"].map(_year),
                          "publisher": books["publisher"].map(_text)})
    users = users.drop_duplicates("user_id", keep="first")
    books = books.drop_duplicates("item_id", keep="first")  # ISBNs that differ only in case
    return ratings, users, books, skipped


def _isbn(values: pd.Series) -> pd.Series:
    return values.str.strip().str.upper()


def _clean(value: str) -> str:
    value = value.strip()
    return "" if value.lower() in _UNKNOWN else value


def _text(value: str) -> str:
    return _clean(html.unescape(value))


def _year(value: str) -> str:
    value = value.strip()
    return value if value.isdigit() and int(value) > 0 else ""  # "0" and shifted text are unknown
