"""MovieLens-1M (Harper & Konstan, The MovieLens Datasets, ACM TiiS 2015), preprocessed as ClickPrompt does.

Raw data: GroupLens's ``ml-1m.zip`` (``ratings.dat``, ``users.dat``, ``movies.dat``: ``::``-separated, latin-1),
downloaded from files.grouplens.org and pinned by sha256 (GroupLens publishes the md5 next to it; the sha256
is the one independent loaders, TensorFlow's among them, pin).

Preprocessing (ClickPrompt, Appendix A): drop the neutral rating 3, label = rating >= 4, global temporal
8:1:1 split (rows sorted by timestamp, same-second rows in file order). No k-core filter: every user of ML-1M
has at least 20 ratings. Fields, in ClickPrompt's order: user id, gender, age, occupation, zip code, movie
id, title, genres; the coded values are written out as the README defines them, so the "field is value."
text reads "age is 25-34. occupation is college/grad student." rather than "age is 25. occupation is 4.".
Titles keep their year ("Toy Story (1995)"); genres are joined with ", ". User history (``history_length``
L > 0): the user's earlier liked movies, most recent first, as for MovieLens-100K.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrbench.data.prep import check_history_length, check_split, join_side, temporal_ctr_data
from ctrbench.data.readers import read_separated
from ctrbench.data.sources import DataSource, UrlSource
from ctrbench.data.types import CTRData, TextSpec
from ctrbench.errors import DataError
from ctrbench.text.templates import YES_NO_QUESTION
from ctrbench_datasets.base import AUTO, RawDataset

NAME = "movielens-1m"
PREPROCESS_VERSION = 1
URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
CHECKSUM = "sha256:a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"  # md5 c4d9eecf…590906

FIELDS = (("user_id", "user id"), ("gender", "gender"), ("age", "age"), ("occupation", "occupation"),
          ("zip_code", "zip code"), ("item_id", "movie id"), ("title", "title"), ("genres", "genres"))
# The Yes/No prompt of the LLM methods, MovieLens-100K's without its release-year field (ML-1M titles keep the year).
PROMPT = ("User {user_id} is a {gender} {occupation} aged {age} (zip code {zip_code}). "
          "The user recently liked: {history}. Movie {item_id} is \"{title}\" ({genres}). "
          "Will user {user_id} like movie {item_id}? " + YES_NO_QUESTION)
TEXT = TextSpec(prompt=PROMPT, item_name="title")
GENDERS = {"F": "female", "M": "male"}
AGES = {"1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+"}
OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
               "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
               "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
               "tradesman/craftsman", "unemployed", "writer")


class MovieLens1M(RawDataset):
    """MovieLens-1M as a CTR task (ClickPrompt preprocessing).

    ``source``: "auto", "download" or a directory holding ``ratings.dat``/``users.dat``/``movies.dat`` or
    ``ml-1m.zip`` (see ``ctrbench_datasets.base``). ``drop_rating``: the neutral rating removed (None keeps
    all). ``positive_min_rating``: label = rating >= this. ``split``: train/valid/test shares of the global
    timestamp order. ``history_length``: length L of each sample's liked-movies history; 0 = none.
    ``download_timeout``: seconds before an unresponsive download fails.
    """

    name = NAME
    version = PREPROCESS_VERSION
    files = ("ratings.dat", "users.dat", "movies.dat")
    archive = "ml-1m.zip"
    manual = f"download {URL} (or its files) from https://grouplens.org/datasets/movielens/1m/"
    text = TEXT

    def __init__(self, source: str = AUTO, drop_rating: int | None = 3, positive_min_rating: int = 4,
                 split: tuple[float, float, float] = (0.8, 0.1, 0.1), history_length: int = 20,
                 download_timeout: float = 30.0) -> None:
        super().__init__(source)
        self.drop_rating = drop_rating
        self.positive_min_rating = positive_min_rating
        self.split = check_split(NAME, split)
        self.history_length = check_history_length(NAME, history_length)
        self.download_timeout = float(download_timeout)

    def download(self) -> DataSource | None:
        return UrlSource(URL, self.archive, CHECKSUM, timeout=self.download_timeout)

    def config(self) -> dict[str, Any]:
        return {"drop_rating": self.drop_rating, "positive_min_rating": self.positive_min_rating,
                "split": list(self.split), "history_length": self.history_length}

    def build(self, files: dict[str, Path], workdir: Path) -> CTRData:
        ratings, users, movies = read_raw(files)
        if self.drop_rating is not None:
            ratings = ratings[ratings["rating"] != self.drop_rating]
        table = join_side(join_side(ratings, users, "user_id", NAME), movies, "item_id", NAME)
        return temporal_ctr_data(NAME, table, FIELDS, positive_min_rating=self.positive_min_rating, split=self.split,
                                 history_length=self.history_length, history_text="recently liked movies",
                                 description=f"MovieLens-1M from {files['ratings.dat'].parent}")


def read_raw(files: dict[str, Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ratings, users, movies) with the coded user attributes written out and genres joined by ", "."""
    ratings = read_separated(files["ratings.dat"], "::", ["user_id", "item_id", "rating", "timestamp"],
                             what=f"{NAME}: ratings.dat")
    users = read_separated(files["users.dat"], "::", ["user_id", "gender", "age", "occupation", "zip_code"],
                           what=f"{NAME}: users.dat")
    movies = read_separated(files["movies.dat"], "::", ["item_id", "title", "genres"], what=f"{NAME}: movies.dat")
    try:
        ratings["rating"] = pd.to_numeric(ratings["rating"], errors="raise").astype(np.float64)
        ratings["timestamp"] = pd.to_numeric(ratings["timestamp"], errors="raise").astype(np.int64)
    except ValueError as exc:
        raise DataError(f"{NAME}: ratings.dat: a rating or timestamp is not a number: {exc}") from None
    users["gender"] = users["gender"].map(lambda v: GENDERS.get(v, v))
    users["age"] = users["age"].map(lambda v: AGES.get(v, v))
    users["occupation"] = users["occupation"].map(_occupation)
    movies["genres"] = movies["genres"].map(lambda v: ", ".join(g for g in v.split("|") if g))
    return ratings, users, movies


def _occupation(code: str) -> str:
    return OCCUPATIONS[int(code)] if code.isdigit() and int(code) < len(OCCUPATIONS) else code
