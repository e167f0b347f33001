"""Amazon 2018 reviews from small gzip JSON-lines files: duplicates, the k-core fixed point, metadata, split."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from test_history import brute_force_history

from ctrbench.errors import DataError
from ctrbench.plugins import load_plugins
from ctrbench.testing import check_dataset
from ctrbench.text import item_texts
from ctrbench_datasets.amazon import Amazon

# (reviewer, asin, overall, unixReviewTime) in file order. With k = 2 the k-core needs four rounds:
# items 3 and 5 go (1 review), then user D (1 left), then item 4 (C only), then user C (1 left).
# A rates item 1 twice (the later review, t=300, wins); B rates item 2 twice at the same time (the later line wins).
REVIEWS = [
    ("A", "i1", 2.0, 50), ("A", "i2", 4.0, 110), ("A", "i3", 5.0, 120), ("B", "i1", 5.0, 130),
    ("B", "i2", 1.0, 200), ("C", "i2", 5.0, 140), ("C", "i4", 4.0, 150), ("D", "i4", 2.0, 160),
    ("D", "i5", 5.0, 170), ("B", "i2", 4.0, 200), ("A", "i1", 5.0, 300),
    ("E", "i6", 5.0, 210), ("E", "i7", 3.0, 220), ("E", "i8", 4.0, 230), ("F", "i6", 1.0, 215),
    ("F", "i7", 5.0, 225), ("F", "i8", 4.0, 235), ("G", "i6", 4.0, 240), ("G", "i7", 5.0, 250),
    ("G", "i8", 2.0, 260), ("H", "i6", 5.0, 270), ("H", "i7", 4.0, 280), ("H", "i8", 5.0, 290),
]
# What survives, by time (a stable sort of file order): the dense E-H block and A, B on items 1 and 2.
KEPT = sorted([("A", "i2", 4.0, 110), ("B", "i1", 5.0, 130), ("B", "i2", 4.0, 200), ("A", "i1", 5.0, 300),
               *REVIEWS[11:]], key=lambda r: r[3])
META = [
    {"asin": "i6", "title": "Lego &amp; Friends  Castle", "brand": "LEGO",
     "category": ["Toys & Games", "Building Toys", "Building Sets"]},
    {"asin": "i6", "title": "a second record of i6 is ignored", "brand": "X", "category": []},
    {"asin": "i1", "title": "Puzzle", "brand": "Ravensburger", "category": ["Toys & Games", "Puzzles"]},
    {"asin": "i2", "title": "Yo-yo", "category": []},
    {"asin": "i8", "title": "Kite", "brand": "", "category": ["Toys & Games", "Sports & Outdoor Play", "Kites"]},
    {"asin": "zz", "title": "never rated", "brand": "Nobody", "category": ["Toys & Games"]},
]  # i7 has no metadata


def write_amazon(root: Path, category: str = "Toys_and_Games") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"overall": r, "verified": True, "reviewerID": u, "asin": i, "unixReviewTime": t,
                         "reviewText": "fine; \"ok\""}) for u, i, r, t in REVIEWS]
    lines.insert(5, "{not json")  # a damaged line is skipped and counted
    with gzip.open(root / f"{category}_5.json.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with gzip.open(root / f"meta_{category}.json.gz", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(m) + "\n" for m in META))
    return root


def _pairs(data) -> list[tuple[str, str]]:
    return [(data.vocab["user_id"][u], data.vocab["item_id"][i]) for u, i in zip(data.X[:, 0], data.X[:, 1],
                                                                                   strict=True)]


def test_dedupe_and_kcore_to_a_fixed_point(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = Amazon("Toys_and_Games", source=str(write_amazon(tmp_path / "raw")), kcore=2).load(tmp_path / "c")
    check_dataset(data)
    assert data.name == "amazon-toys"
    assert _pairs(data) == [(u, i) for u, i, _, _ in KEPT]
    assert data.num_samples == 16
    assert data.y.tolist() == [float(r >= 4) for _, _, r, _ in KEPT]
    assert int(data.y.sum()) == 13
    users = np.bincount(data.user)[1:]
    items = np.bincount(data.item)[1:]
    assert users.min() >= 2 and items.min() >= 2  # the k-core invariant
    assert sorted(data.vocab["user_id"][1:]) == ["A", "B", "E", "F", "G", "H"]
    assert "skipped 1 lines that are not JSON objects (lines 6)" in caplog.text


def test_temporal_split_and_history_without_leakage(tmp_path: Path) -> None:
    data = Amazon("Toys_and_Games", source=str(write_amazon(tmp_path / "raw")), kcore=2,
                  history_length=4).load(tmp_path / "c")
    assert data.split_sizes() == {"train": 12, "valid": 2, "test": 2}
    assert data.ts.tolist() == [t for *_, t in KEPT]
    train, valid, test = (data.ts[data.splits[s]] for s in ("train", "valid", "test"))
    assert train.max() <= valid.min() and valid.max() <= test.min()
    np.testing.assert_array_equal(data.sequences["history"], brute_force_history(data.user, data.ts, data.y,
                                                                                 data.item, 4))
    last_a = int(np.flatnonzero(data.ts == 300)[0])  # A's item 1 at t=300: liked i2 at 110
    assert [data.vocab["item_id"][i] for i in data.sequences["history"][last_a] if i] == ["i2"]


def test_item_fields_come_from_the_metadata(tmp_path: Path) -> None:
    data = Amazon("Toys_and_Games", source=str(write_amazon(tmp_path / "raw")), kcore=2).load(tmp_path / "c")
    texts = dict(zip(data.vocab["item_id"], item_texts(data), strict=True))
    assert texts["i6"] == "title is Lego & Friends Castle. brand is LEGO. category is Building Sets."
    assert texts["i1"] == "title is Puzzle. brand is Ravensburger. category is Puzzles."
    assert texts["i2"] == "title is Yo-yo. brand is unknown. category is unknown."
    assert texts["i7"] == "title is unknown. brand is unknown. category is unknown."  # no metadata
    assert "never rated" not in data.vocab["title"]


def test_default_5_core_leaves_nothing_here(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="amazon-toys: no interaction is left after the 5-core filter"):
        Amazon("Toys_and_Games", source=str(write_amazon(tmp_path / "raw"))).load(tmp_path / "c")


def test_registered_categories_and_the_manual_steps(tmp_path: Path) -> None:
    registry = load_plugins().registry("datasets")
    sports = registry.get("amazon-sports").create(kcore=2)
    assert (sports.name, sports.files) == ("amazon-sports", ("Sports_and_Outdoors_5.json.gz",
                                                             "meta_Sports_and_Outdoors.json.gz"))
    with pytest.raises(DataError) as err:
        sports.load(tmp_path / "cache")
    msg = str(err.value)
    assert msg.startswith("amazon-sports: raw files not found: put Sports_and_Outdoors_5.json.gz and "
                          f"meta_Sports_and_Outdoors.json.gz in {tmp_path / 'cache' / 'raw' / 'amazon-sports'}")
    assert "request form" in msg and "\n" not in msg
    books = registry.get("amazon").create(category="Books", reviews="full")
    assert (books.name, books.files) == ("amazon-books", ("Books.json.gz", "meta_Books.json.gz"))
    with pytest.raises(DataError, match="amazon: set category"):
        registry.get("amazon").create().load(tmp_path / "cache")
    data = registry.get("amazon").create(category="Baby", source=str(write_amazon(tmp_path / "raw", "Baby")),
                                         kcore=2).load(tmp_path / "cache")
    assert data.name == "amazon-baby" and data.num_samples == 16
