"""Book-Crossing from small files in the BX-CSV-Dump format, quirks included: ``;`` inside quoted fields,
latin-1 bytes, NULL ages, HTML entities, a malformed line, implicit ratings and duplicate ratings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctrbench.errors import DataError
from ctrbench.testing import check_dataset
from ctrbench.text import render_row
from ctrbench_datasets.bookcrossing import BookCrossing

# (user, ISBN, rating) in file order. Rating 0 = implicit. User 12 rates 034545104X twice (the second
# time with a lower-case x): one rating per (user, ISBN) is kept, the last.
RATINGS = [
    ("10", "034545104X", 0), ("11", "0155061224", 5), ("12", "034545104X", 7), ("11", "0195153448", 9),
    ("13", "0002005018", 4), ("10", "0195153448", 0), ("12", "0155061224", 3), ("14", "0002005018", 8),
    ("13", "0195153448", 5), ("12", "034545104x", 2), ("14", "0155061224", 10), ("10", "0002005018", 6),
    ("15", "0399135782", 1), ("11", "0002005018", 5), ("15", "0195153448", 8), ("13", "0399135782", 0),
    ("14", "0399135782", 9), ("15", "0002005018", 2), ("10", "9999999999", 8), ("11", "0399135782", 4),
    ("16", "0195153448", 6), ("16", "0155061224", 7),
]
BOOKS = [
    '"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"Image-URL-S";"Image-URL-M";"Image-URL-L"',
    '"0195153448";"Classical Mythology; a reader";"Mark P. O. Morford";"2002";"Oxford University Press";"s";"m";"l"',
    '"0002005018";"Clara Callan";"Richard Bruce Wright";"2001";"HarperFlamingo Canada";"s";"m";"l"',
    '"0155061224";"Les Misérables";"Victor Hugo";"0";"Harcourt &amp; Brace";"s";"m";"l"',
    # the dump's malformed kind of line: a backslash-escaped quote ends the title early, leaving 9 fields
    '"0399135782";"DK Readers: Creating the X-Men \\";Level 4\\"";"James Buckley";"2000";"DK";"s";"m";"l"',
    '"0451524934";"1984";"George Orwell";"1950"',  # cut short: 4 fields
    '"034545104X";"Flesh Tones: A Novel";"M. J. Rose";"2002";"Ballantine Books";"s";"m";"l"',
]
USERS = ['"User-ID";"Location";"Age"', '"10";"nyc, new york, usa";NULL', '"11";"stockton, california, usa";"18"',
         '"12";"moscow, yukon territory, russia";NULL', '"13";"porto, v.n.gaia, portugal";"17"',
         '"14";"farnborough, hants, united kingdom";NULL', '"15";"santa monica, california, usa";"61"',
         '"16";"köln, nrw, germany";"34"']


def write_bx(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    ratings = '"User-ID";"ISBN";"Book-Rating"\n' + "".join(f'"{u}";"{i}";"{r}"\n' for u, i, r in RATINGS)
    (root / "BX-Book-Ratings.csv").write_bytes(ratings.encode("latin-1"))
    (root / "BX-Books.csv").write_bytes("\r\n".join(BOOKS).encode("latin-1") + b"\r\n")
    (root / "BX-Users.csv").write_bytes("\n".join(USERS).encode("latin-1") + b"\n")
    return root


def _kept() -> list[tuple[str, str, int]]:
    """Explicit ratings, ISBNs upper-cased, the last rating of each (user, ISBN), in file order."""
    rows = [(u, i.upper(), r) for u, i, r in RATINGS if r != 0]
    last = {(u, i): k for k, (u, i, _) in enumerate(rows)}
    return [row for k, row in enumerate(rows) if last[(row[0], row[1])] == k]


def test_explicit_ratings_deduplicated_and_labelled(tmp_path: Path) -> None:
    data = BookCrossing(source=str(write_bx(tmp_path / "raw"))).load(tmp_path / "cache")
    check_dataset(data)
    kept = _kept()
    assert data.num_samples == len(kept) == 18  # 22 rows - 3 implicit - 1 duplicate
    users = [data.vocab["user_id"][i] for i in data.X[:, 0]]
    isbns = [data.vocab["item_id"][i] for i in data.X[:, 3]]
    assert list(zip(users, isbns, strict=True)) == [(u, i) for u, i, _ in kept]
    assert data.y.tolist() == [float(r >= 5) for *_, r in kept]
    assert int(data.y.sum()) == 12
    assert ("12", "034545104X", 2) in kept and ("12", "034545104X", 7) not in kept  # the later one wins


def test_quoted_separators_latin1_entities_and_the_malformed_line(tmp_path: Path) -> None:
    data = BookCrossing(source=str(write_bx(tmp_path / "raw"))).load(tmp_path / "cache")
    titles = set(data.vocab["title"])
    assert {"Classical Mythology; a reader", "Les Misérables", "Clara Callan", "Flesh Tones: A Novel"} <= titles
    assert not any("X-Men" in t for t in titles)  # the malformed line was skipped, not half-read
    assert "2 malformed lines of BX-Books.csv skipped" in data.description
    assert "Harcourt & Brace" in data.vocab["publisher"]
    assert "köln, nrw, germany" in data.vocab["location"]
    row = int(np.flatnonzero(np.array([data.vocab["item_id"][i] for i in data.X[:, 3]]) == "0155061224")[0])
    assert render_row(data, row) == (
        "user id is 11. location is stockton, california, usa. age is 18. ISBN is 0155061224. "
        "book title is Les Misérables. book author is Victor Hugo. year of publication is unknown. "
        "publisher is Harcourt & Brace.")
    no_book = int(np.flatnonzero(np.array([data.vocab["item_id"][i] for i in data.X[:, 3]]) == "0399135782")[0])
    assert data.vocab["title"][data.X[no_book, data.field_index("title")]] == "unknown"


def test_no_timestamps_so_the_split_is_random_and_seeded(tmp_path: Path) -> None:
    raw = write_bx(tmp_path / "raw")
    data = BookCrossing(source=str(raw)).load(tmp_path / "cache")
    assert data.split_sizes() == {"train": 14, "valid": 2, "test": 2}  # floor(14.4), floor(16.2)
    perm = np.random.default_rng(42).permutation(18)
    np.testing.assert_array_equal(data.splits["train"], np.sort(perm[:14]))
    np.testing.assert_array_equal(data.splits["test"], np.sort(perm[16:]))
    assert np.all(data.ts == 0) and data.sequences == {}
    same = BookCrossing(source=str(raw)).load(tmp_path / "cache2")
    other = BookCrossing(source=str(raw), seed=7).load(tmp_path / "cache")
    np.testing.assert_array_equal(same.splits["valid"], data.splits["valid"])
    assert not np.array_equal(other.splits["train"], data.splits["train"])
    assert other.fingerprint != data.fingerprint
    np.testing.assert_array_equal(other.X, data.X)


def test_keeping_implicit_ratings(tmp_path: Path) -> None:
    data = BookCrossing(source=str(write_bx(tmp_path / "raw")), explicit_only=False).load(tmp_path / "cache")
    assert data.num_samples == 21  # only the duplicate goes
    assert int(data.y.sum()) == 12  # implicit 0s are negatives


def test_a_ratings_file_without_the_expected_header_is_a_data_error(tmp_path: Path) -> None:
    raw = write_bx(tmp_path / "raw")
    (raw / "BX-Book-Ratings.csv").write_bytes(b'"user";"isbn";"rating"\n"1";"2";"3"\n')
    with pytest.raises(DataError, match=r"bookcrossing: BX-Book-Ratings.csv: the header lacks User-ID, ISBN, "
                                        r"Book-Rating \(it has user, isbn, rating\)"):
        BookCrossing(source=str(raw)).load(tmp_path / "cache")
