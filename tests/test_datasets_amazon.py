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
from ctrbench_datasets.amazon import Amazon, description_text

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
     "category": ["Toys & Games", "Building Toys", "Building Sets"],
     "description": ["<p>Build the <b>castle</b>&nbsp;&amp; its   towers.</p>", "&lt;i&gt;Ages 6+&lt;/i&gt;"]},
    {"asin": "i6", "title": "a second record of i6 is ignored", "brand": "X", "category": [],
     "description": ["ignored too"]},
    {"asin": "i1", "title": "Puzzle", "brand": "Ravensburger", "category": ["Toys & Games", "Puzzles"],
     "description": "A 1000 piece jigsaw puzzle of the Alps, edge pieces < 3 cm"},  # 2014 style: one string
    {"asin": "i2", "title": "Yo-yo", "category": []},
    {"asin": "i8", "title": "Kite", "brand": "", "description": [],
     "category": ["Toys & Games", "</span></span></span>", "Sports & Outdoor Play", "Kites"]},
    {"asin": "zz", "title": "never rated", "brand": "Nobody", "category": ["Toys & Games"]},
]  # i7 has no metadata


def write_amazon(root: Path, category: str = "Toys_and_Games", reviews: list[tuple[str, str, float, int]] = REVIEWS,
                 meta: list[dict[str, object]] = META) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"overall": r, "verified": True, "reviewerID": u, "asin": i, "unixReviewTime": t,
                         "reviewText": "fine; \"ok\""}) for u, i, r, t in reviews]
    lines.insert(5, "{not json")  # a damaged line is skipped and counted
    with gzip.open(root / f"{category}_5.json.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with gzip.open(root / f"meta_{category}.json.gz", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(m) + "\n" for m in meta))
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


# -- CELA's item text: the category path and the description (`item_text: long`) ------------------------------

LONG_TEXTS = {
    "i6": "title is Lego & Friends Castle. brand is LEGO. categories is Toys & Games > Building Toys > Building Sets. "
          "description is Build the castle & its towers. Ages 6+.",
    "i1": "title is Puzzle. brand is Ravensburger. categories is Toys & Games > Puzzles. "
          "description is A 1000 piece jigsaw puzzle of the Alps, edge pieces < 3 cm.",
    "i2": "title is Yo-yo. brand is unknown. categories is unknown. description is unknown.",
    "i8": "title is Kite. brand is unknown. categories is Toys & Games > Sports & Outdoor Play > Kites. "
          "description is unknown.",
    "i7": "title is unknown. brand is unknown. categories is unknown. description is unknown.",  # no metadata
}


def test_long_item_text_reads_the_description_and_the_category_path(tmp_path: Path) -> None:
    raw = str(write_amazon(tmp_path / "raw"))
    short = Amazon("Toys_and_Games", source=raw, kcore=2).load(tmp_path / "c")
    data = Amazon("Toys_and_Games", source=raw, kcore=2, item_text="long").load(tmp_path / "c")
    check_dataset(data)
    # The texts are per item, not fields: ID models see exactly the inputs of `item_text: short`.
    assert [f.name for f in data.fields] == ["user_id", "item_id", "title", "brand", "category"]
    assert sorted(data.item_text) == ["categories", "description"] and short.item_text == {}
    assert dict(zip(data.vocab["item_id"], item_texts(data), strict=True)) == {"unknown": "", **LONG_TEXTS}
    description = dict(zip(data.vocab["item_id"], data.item_text["description"], strict=True))
    assert description == {"unknown": "", "i6": "Build the castle & its towers. Ages 6+", "i2": "unknown",
                           "i1": "A 1000 piece jigsaw puzzle of the Alps, edge pieces < 3 cm", "i8": "unknown",
                           "i7": "unknown"}
    np.testing.assert_array_equal(data.X, short.X)
    np.testing.assert_array_equal(data.y, short.y)
    assert data.vocab == short.vocab
    assert data.fingerprint != short.fingerprint
    # The cache round-trips the texts (a second load reads meta.json, not the raw files).
    assert Amazon("Toys_and_Games", source=raw, kcore=2, item_text="long").load(tmp_path / "c").item_text == (
        data.item_text)
    assert short.text.item == "" and item_texts(short)[short.vocab["item_id"].index("i6")] == (
        "title is Lego & Friends Castle. brand is LEGO. category is Building Sets.")


def test_description_is_cut_at_a_word_boundary(tmp_path: Path) -> None:
    data = Amazon("Toys_and_Games", source=str(write_amazon(tmp_path / "raw")), kcore=2, item_text="long",
                  description_length=19).load(tmp_path / "c")
    texts = dict(zip(data.vocab["item_id"], item_texts(data), strict=True))
    assert texts["i1"].endswith("description is A 1000 piece jigsaw.")  # "A 1000 piece jigsaw puzzle"[:19]
    assert texts["i6"].endswith("description is Build the castle &.")  # [:19] ends inside "its": cut back
    assert max(len(v) for v in data.item_text["description"]) <= 19


@pytest.mark.parametrize(("value", "limit", "expected"), [
    ("one two three", 100, "one two three"),
    ("one two three", 7, "one two"),  # the cut falls on the space after "two": nothing to cut back
    ("one two three", 9, "one two"),  # inside "three": back to the last whole word
    ("Supercalifragilistic", 5, "Super"),  # one long word: cut inside it
    (["<div>a<br>b</div>", None, "c &amp;amp; d"], 100, "a b c &amp; d"),  # entities decoded once
    ("x <b>y</b> &lt;script&gt;z&lt;/script&gt; 2 < 3 > 1", 100, "x y z 2 < 3 > 1"),  # escaped tags go, "<" stays
    (["<!-- a comment -->", " \n "], 100, ""),
    (None, 100, ""),
])
def test_description_text(value: object, limit: int, expected: str) -> None:
    assert description_text(value, limit) == expected


# -- CELA's labels: every review positive, one sampled negative per review (`labels: review`) -----------------

def _reviewed(rows: list[tuple[str, str, float, int]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for u, i, *_ in rows:
        out.setdefault(u, set()).add(i)
    return out


def test_review_labels_pair_each_review_with_one_unreviewed_negative(tmp_path: Path) -> None:
    data = Amazon("Toys_and_Games", source=str(write_amazon(tmp_path / "raw")), kcore=2, labels="review",
                  history_length=4).load(tmp_path / "c")
    check_dataset(data)
    pairs = _pairs(data)
    assert data.num_samples == 2 * len(KEPT) == 32
    assert data.y.tolist() == [1.0, 0.0] * len(KEPT)  # balanced, each negative right after its positive
    assert pairs[0::2] == [(u, i) for u, i, _, _ in KEPT]  # every kept review, whatever its stars, in time order
    assert data.ts.tolist() == [t for *_, t in KEPT for _ in (0, 1)]  # the negative has its positive's time
    reviewed, items = _reviewed(KEPT), {i for _, i, _, _ in KEPT}
    for (user, positive), (neg_user, negative) in zip(pairs[0::2], pairs[1::2], strict=True):
        assert neg_user == user
        assert negative in items - reviewed[user], (user, positive, negative)
    assert data.split_sizes() == {"train": 25, "valid": 3, "test": 4}
    # The history holds earlier reviews (the positives), never a sampled negative.
    history = data.sequences["history"]
    np.testing.assert_array_equal(history, brute_force_history(data.user, data.ts, data.y, data.item, 4))
    last_a = [r for r in range(32) if pairs[r][0] == "A" and data.ts[r] == 300]
    assert [[data.vocab["item_id"][i] for i in history[r] if i] for r in last_a] == [["i2"], ["i2"]]
    assert data.sequence_fields[0].text_name == "recently reviewed items"


def test_negative_sampling_is_seeded(tmp_path: Path) -> None:
    raw = str(write_amazon(tmp_path / "raw"))

    def negatives(seed: int, cache: str) -> list[tuple[str, str]]:
        data = Amazon("Toys_and_Games", source=raw, kcore=2, labels="review", seed=seed).load(tmp_path / cache)
        return _pairs(data)[1::2]

    assert negatives(42, "a") == negatives(42, "b")  # rebuilt from scratch in another cache: the same draws
    assert negatives(42, "a") != negatives(7, "a")


def test_negatives_are_uniform_over_the_unreviewed_items(tmp_path: Path) -> None:
    # 400 users review item p only; user z reviews a, b, c, d. So each of the 400 negatives is uniform over
    # {a, b, c, d} (100 expected each, sd 8.7) and z's four negatives can only be p.
    rows = [(f"u{k}", "p", 5.0, k) for k in range(400)] + [("z", x, 1.0, 500) for x in "abcd"]
    data = Amazon("Toys_and_Games", source=str(write_amazon(tmp_path / "raw", reviews=rows, meta=META[-1:])), kcore=1,
                  labels="review", history_length=0).load(tmp_path / "c")
    check_dataset(data)
    pairs = _pairs(data)
    negatives = [i for u, i in pairs[1::2] if u != "z"]
    counts = {x: negatives.count(x) for x in "abcd"}
    assert sum(counts.values()) == 400 and all(65 <= c <= 135 for c in counts.values()), counts  # within 4 sd
    assert [i for u, i in pairs[1::2] if u == "z"] == ["p"] * 4
    assert item_texts(data)[1] == "title is unknown. brand is unknown. category is unknown."  # no metadata


def test_a_user_who_reviewed_every_item_has_no_negative(tmp_path: Path) -> None:
    rows = [("u", "a", 5.0, 1), ("u", "b", 5.0, 2), ("v", "a", 5.0, 3)]
    with pytest.raises(DataError, match="amazon-toys: user u reviewed every item"):
        Amazon("Toys_and_Games", source=str(write_amazon(tmp_path / "raw", reviews=rows, meta=META[-1:])), kcore=1,
               labels="review").load(tmp_path / "c")


# With 4+ stars the fixture's valid and test rows are all positive; 5 stars and a 7:1.5:1.5 split give both classes
# in every split, which the plugin check asks for (AUC needs them).
RATING = {"positive_min_rating": 5.0, "split": [0.7, 0.15, 0.15]}


@pytest.mark.parametrize("config", [RATING, {**RATING, "item_text": "long", "history_length": 0}, {"labels": "review"},
                                    {"labels": "review", "item_text": "long"}])
def test_check_dataset_passes_for_every_option(tmp_path: Path, config: dict[str, object]) -> None:
    check_dataset(Amazon, config={"category": "Toys_and_Games", "source": str(write_amazon(tmp_path / "raw")),
                                  "kcore": 2, **config}, cache_dir=tmp_path / "c")


def test_the_default_is_the_rating_protocol_and_options_change_the_fingerprint(tmp_path: Path) -> None:
    raw = str(write_amazon(tmp_path / "raw"))

    def fingerprint(**config: object) -> str:
        return Amazon("Toys_and_Games", source=raw, kcore=2, **config).fingerprint(tmp_path / "c")

    default = fingerprint()
    assert default == fingerprint(labels="rating", seed=42, item_text="short", description_length=512)
    assert len({default, fingerprint(labels="review"), fingerprint(labels="review", seed=7),
                fingerprint(item_text="long"), fingerprint(item_text="long", description_length=100)}) == 5
    data = Amazon("Toys_and_Games", source=raw, kcore=2).load(tmp_path / "c")
    assert [f.name for f in data.fields] == ["user_id", "item_id", "title", "brand", "category"]
    assert data.sequences["history"].shape == (16, 20)  # CELA's "behavior sequence up to 20" is the default
    for key, value, allowed in [("labels", "cela", "rating, review"), ("item_text", "full", "short, long")]:
        with pytest.raises(DataError, match=f"amazon-toys: {key} must be one of {allowed}, got '{value}'"):
            Amazon("Toys_and_Games", **{key: value})
    with pytest.raises(DataError, match="description_length must be an integer >= 1"):
        Amazon("Toys_and_Games", description_length=0)
    sports = load_plugins().registry("datasets").get("amazon-sports").create(labels="review", item_text="long")
    assert (sports.labels, sports.item_text, sports.history_length) == ("review", "long", 20)
