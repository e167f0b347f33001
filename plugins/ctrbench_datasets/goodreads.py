"""GoodReads book shelves, by genre (Wan & McAuley, Item Recommendation on Monotonic Behavior Chains, RecSys 2018).

Raw data, per genre (``children``, ``comics_graphic``, ``fantasy_paranormal``, ``history_biography``,
``mystery_thriller_crime``, ``poetry``, ``romance``, ``young_adult``): ``goodreads_interactions_<genre>.json.gz``
and ``goodreads_books_<genre>.json.gz``, gzip-compressed JSON lines from the UCSD Book Graph. UCSD asks users
to request access through a form and publishes no checksums: there is no download here, and the raw files'
sha256 go into the cache key.

Preprocessing: shelf additions without a rating (``rating`` 0) are dropped (``drop_unrated``); the time of a
rating is ``date_updated`` (``date_added`` where it is missing; rows with neither are dropped and counted); one
rating per (user, book), the latest; the ``kcore``-core (default 10) iterated until every user and book has at
least k ratings; label = rating >= 4; global temporal 8:1:1 split. Book fields from the books file: title,
first author's id (names are in a separate file), publisher, publication year, language code. Fields: user id,
book id, title, author id, publisher, publication year, language. User history (``history_length`` L > 0):
the user's earlier liked books, most recent first.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrbench.data.prep import check_count, check_history_length, check_split, join_side, latest_core, temporal_ctr_data
from ctrbench.data.readers import read_json_lines
from ctrbench.data.types import CTRData
from ctrbench.errors import DataError
from ctrbench_datasets.base import AUTO, RawDataset

log = logging.getLogger(__name__)

NAME = "goodreads"
PREPROCESS_VERSION = 1
SITE = "https://mengtingwan.github.io/data/goodreads.html"
GENRES = ("children", "comics_graphic", "fantasy_paranormal", "history_biography", "mystery_thriller_crime",
          "poetry", "romance", "young_adult")
FIELDS = (("user_id", "user id"), ("item_id", "book id"), ("title", "title"), ("author", "author id"),
          ("publisher", "publisher"), ("year", "publication year"), ("language", "language"))
DATE_FORMAT = "%a %b %d %H:%M:%S %z %Y"  # "Tue Oct 17 08:47:24 -0700 2017"


class GoodReads(RawDataset):
    """One genre of the GoodReads interactions as a CTR task.

    ``genre``: one of the eight genre files (see ``GENRES``). ``source``: "auto" or a directory holding the two
    files. ``kcore``: minimum ratings per user and per book, iterated to a fixed point (1 = no filter).
    ``positive_min_rating``: label = rating >= this. ``drop_unrated``: drop shelf additions without a rating.
    ``split``: shares of the global time order. ``history_length``: length L of the liked-books history.
    """

    version = PREPROCESS_VERSION

    def __init__(self, genre: str = "", source: str = AUTO, kcore: int = 10, positive_min_rating: int = 4,
                 drop_unrated: bool = True, split: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 history_length: int = 20) -> None:
        super().__init__(source)
        self.genre = str(genre).strip()
        self.name = f"{NAME}-{self.genre}" if self.genre else NAME
        self.kcore = check_count(self.name, "kcore", kcore, minimum=1)
        self.positive_min_rating = positive_min_rating
        self.drop_unrated = bool(drop_unrated)
        self.split = check_split(self.name, split)
        self.history_length = check_history_length(self.name, history_length)
        self.interactions_file = f"goodreads_interactions_{self.genre}.json.gz"
        self.books_file = f"goodreads_books_{self.genre}.json.gz"
        self.files = (self.interactions_file, self.books_file)
        self.manual = (f"the UCSD Book Graph asks for a request form: see {SITE}, then download "
                       f"{self.interactions_file} and {self.books_file} (the 'by genre' files)")

    def check(self) -> None:
        if self.genre not in GENRES:
            raise DataError(f"{NAME}: set genre to one of {', '.join(GENRES)} (got {self.genre!r})")

    def config(self) -> dict[str, Any]:
        return {"genre": self.genre, "kcore": self.kcore, "positive_min_rating": self.positive_min_rating,
                "drop_unrated": self.drop_unrated, "split": list(self.split), "history_length": self.history_length}

    def build(self, files: dict[str, Path], workdir: Path) -> CTRData:
        rows = read_interactions(files[self.interactions_file], f"{self.name}: {self.interactions_file}",
                                 self.drop_unrated)
        rows = latest_core(rows, self.kcore, self.name)
        books = read_books(files[self.books_file], set(rows["item_id"]), f"{self.name}: {self.books_file}")
        return temporal_ctr_data(self.name, join_side(rows, books, "item_id", self.name), FIELDS,
                                 positive_min_rating=self.positive_min_rating, split=self.split,
                                 history_length=self.history_length, history_text="recently liked books",
                                 description=f"GoodReads {self.genre} ({self.kcore}-core) from "
                                             f"{files[self.interactions_file].parent}")


def parse_times(values: pd.Series) -> pd.Series:
    """GoodReads dates ("Tue Oct 17 08:47:24 -0700 2017") as int64 Unix seconds; unparseable ones as -1."""
    parsed = pd.to_datetime(values, format=DATE_FORMAT, errors="coerce", utc=True)
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.fillna(-1).astype(np.int64)


def read_interactions(path: Path, what: str, drop_unrated: bool) -> pd.DataFrame:
    """user_id, item_id, rating (int), timestamp (int64 seconds), in file order."""
    undated = [0]

    def reduce(chunk: pd.DataFrame) -> pd.DataFrame:
        rating = pd.to_numeric(chunk["rating"], errors="coerce")
        ts = parse_times(chunk["date_updated"].fillna("").astype(str))
        fallback = parse_times(chunk["date_added"].fillna("").astype(str))
        ts = ts.where(ts >= 0, fallback)
        ok = chunk["user_id"].notna() & chunk["book_id"].notna() & rating.notna()
        undated[0] += int((ok & (ts < 0)).sum())
        ok &= ts >= 0
        return pd.DataFrame({"user_id": chunk["user_id"][ok].astype(str), "item_id": chunk["book_id"][ok].astype(str),
                             "rating": rating[ok].astype(np.int64), "timestamp": ts[ok]})

    keep = (lambda r: r.get("rating") not in (0, "0")) if drop_unrated else None
    df, skipped = read_json_lines(path, ["user_id", "book_id", "rating", "date_updated", "date_added"], what=what,
                                  keep=keep, transform=reduce)
    skipped.log(what, "lines that are not JSON objects")
    if undated[0]:
        log.warning("%s: dropped %d ratings without a readable date", what, undated[0])
    return df.reset_index(drop=True)


def read_books(path: Path, books: set[str], what: str) -> pd.DataFrame:
    """item_id, title, author (first author's id), publisher, year, language for the ``books`` in the file."""
    df, skipped = read_json_lines(path, ["book_id", "title", "authors", "publisher", "publication_year",
                                         "language_code"], what=what, keep=lambda r: str(r.get("book_id")) in books)
    skipped.log(what, "lines that are not JSON objects")
    out = pd.DataFrame({"item_id": df["book_id"].astype(str), "title": df["title"].map(_text),
                        "author": df["authors"].map(_first_author), "publisher": df["publisher"].map(_text),
                        "year": df["publication_year"].map(_text), "language": df["language_code"].map(_text)})
    return out.drop_duplicates("item_id", keep="first").reset_index(drop=True)


def _text(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    return " ".join(html.unescape(value).split()) if isinstance(value, str) else ""


def _first_author(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return _text(value[0].get("author_id"))
    return ""
