"""GoodReads (one genre) from small gzip JSON-lines files: unrated shelves, dates, duplicates, the k-core."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_history import brute_force_history

from ctrbench.errors import DataError
from ctrbench.testing import check_dataset
from ctrbench_datasets.goodreads import GoodReads, parse_times

T0 = 1_500_000_000
PACIFIC = timezone(timedelta(hours=-7))


def stamp(t: int | None) -> str:
    """A GoodReads date ("Tue Oct 17 08:47:24 -0700 2017") for Unix time ``t``; "" for None."""
    return "" if t is None else datetime.fromtimestamp(t, PACIFIC).strftime("%a %b %d %H:%M:%S %z %Y")


# (user, book, rating, date_updated, date_added) in file order, times relative to T0.
INTERACTIONS = [
    ("u1", "b1", 5, 10, 1), ("u1", "b2", 0, 20, 2), ("u1", "b3", 4, 30, 3), ("u2", "b1", 3, 15, 4),
    ("u2", "b3", 5, None, 35), ("u3", "b1", 4, 40, 5), ("u3", "b3", 2, 50, 6), ("u3", "b4", 5, 60, 7),
    ("u4", "b2", 5, 70, 8), ("u2", "b1", 4, 80, 9), ("u4", "b1", 5, None, None),
]
# kept, by time: b2 (only u4 rates it) and b4 (only u3) go, then u4; u2's second rating of b1 wins.
KEPT = [("u1", "b1", 5, 10), ("u1", "b3", 4, 30), ("u2", "b3", 5, 35), ("u3", "b1", 4, 40), ("u3", "b3", 2, 50),
        ("u2", "b1", 4, 80)]
BOOKS = [
    {"book_id": "b1", "title": "The Hobbit", "authors": [{"author_id": "656983", "role": ""}],
     "publisher": "Houghton Mifflin", "publication_year": "1937", "language_code": "eng"},
    {"book_id": "b3", "title": "Poems &amp; Songs", "authors": [], "publisher": "", "publication_year": "",
     "language_code": "en-US"},
    {"book_id": "b4", "title": "never kept", "authors": [{"author_id": "1"}]},
]


def write_goodreads(root: Path, genre: str = "poetry") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"user_id": u, "book_id": b, "review_id": f"r{k}", "is_read": r > 0, "rating": r,
                         "review_text_incomplete": "", "date_added": stamp(None if a is None else T0 + a),
                         "date_updated": stamp(None if d is None else T0 + d), "read_at": "", "started_at": ""})
             for k, (u, b, r, d, a) in enumerate(INTERACTIONS)]
    with gzip.open(root / f"goodreads_interactions_{genre}.json.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with gzip.open(root / f"goodreads_books_{genre}.json.gz", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(b) + "\n" for b in BOOKS) + "[1, 2]\n")
    return root


def test_goodreads_dates_are_parsed_with_their_offset() -> None:
    times = parse_times(pd.Series(["Tue Oct 17 08:47:24 -0700 2017", "", "not a date"]))
    assert times.tolist() == [int(datetime(2017, 10, 17, 15, 47, 24, tzinfo=timezone.utc).timestamp()), -1, -1]


def test_unrated_undated_duplicates_and_the_kcore(tmp_path: Path) -> None:
    data = GoodReads("poetry", source=str(write_goodreads(tmp_path / "raw")), kcore=2,
                     history_length=2).load(tmp_path / "c")
    check_dataset(data)
    assert data.name == "goodreads-poetry"
    pairs = [(data.vocab["user_id"][u], data.vocab["item_id"][i]) for u, i in zip(data.X[:, 0], data.X[:, 1],
                                                                                  strict=True)]
    assert pairs == [(u, b) for u, b, _, _ in KEPT]
    assert data.ts.tolist() == [T0 + t for *_, t in KEPT]
    assert data.y.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    assert np.bincount(data.user)[1:].min() >= 2 and np.bincount(data.item)[1:].min() >= 2
    assert data.split_sizes() == {"train": 4, "valid": 1, "test": 1}
    np.testing.assert_array_equal(data.sequences["history"],
                                  brute_force_history(data.user, data.ts, data.y, data.item, 2))
    hobbit = data.vocab["item_id"].index("b1")
    row = int(np.flatnonzero(data.item == hobbit)[0])
    assert [data.vocab[f.name][data.X[row, j]] for j, f in enumerate(data.fields)][2:] == [
        "The Hobbit", "656983", "Houghton Mifflin", "1937", "eng"]
    assert "Poems & Songs" in data.vocab["title"]


def test_the_genre_is_required_and_checked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="goodreads: set genre to one of children, comics_graphic, .*got 'poems'"):
        GoodReads("poems").load(tmp_path)
    with pytest.raises(DataError) as err:
        GoodReads("children").load(tmp_path)
    assert str(err.value).startswith("goodreads-children: raw files not found: put goodreads_interactions_children"
                                     ".json.gz and goodreads_books_children.json.gz in ")
    assert "request form" in str(err.value)
