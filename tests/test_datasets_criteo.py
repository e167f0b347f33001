"""Criteo from a small ``train.txt`` in the Kaggle format, against a plain in-memory reference implementation."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ctrbench.data.outofcore import ValueCounter
from ctrbench.data.progress import reporting
from ctrbench.errors import DataError
from ctrbench.testing import check_dataset
from ctrbench_datasets.criteo import CATEGORICAL, NUMERIC, Criteo, bin_numeric


def make_rows(n: int, seed: int = 0) -> list[list[str]]:
    """``n`` lines' fields: label, I1–I13 (some empty, some negative), C1–C26 (8 hex digits, some empty)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = str(int(rng.random() < 0.3))
        ints = ["" if rng.random() < 0.2 else str(int(rng.integers(-2, 4) if rng.random() < 0.5
                                                      else rng.zipf(1.5))) for _ in NUMERIC]
        cats = ["" if rng.random() < 0.1 else f"{int(rng.zipf(1.3)) * 2654435761 % 2**32:08x}" for _ in CATEGORICAL]
        rows.append([label, *ints, *cats])
    return rows


def write_criteo(root: Path, rows: list[list[str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.txt").write_text("".join("\t".join(r) + "\n" for r in rows), encoding="ascii")
    return root


def reference(rows: list[list[str]], min_count: int) -> tuple[np.ndarray, dict[str, list[str]]]:
    """X and vocab by the plain definition: bin, count over all rows, keep >= min_count, rank by frequency."""
    columns = {}
    for j, name in enumerate((*NUMERIC, *CATEGORICAL), start=1):
        values = [r[j] for r in rows]
        if name in NUMERIC:
            values = ["" if v == "" else str(int(math.floor(math.log(float(v)) ** 2)) if float(v) > 2 else int(v))
                      for v in values]
        columns[name] = values
    X = np.zeros((len(rows), len(columns)), np.int64)
    vocab = {}
    for j, (name, values) in enumerate(columns.items()):
        counts = Counter(v for v in values if v != "")
        kept = [v for v, c in counts.items() if c >= min_count]
        if name in NUMERIC:
            kept.sort(key=lambda v: (-counts[v], int(v)))
        else:  # ties by hash: compare only the order of distinct counts, checked separately below
            kept.sort(key=lambda v: -counts[v])
        vocab[name] = ["unknown", "rare", *kept]
        index = {v: k for k, v in enumerate(kept, start=2)}
        X[:, j] = [0 if v == "" else index.get(v, 1) for v in values]
    return X, vocab


@pytest.fixture(scope="module")
def rows() -> list[list[str]]:
    return make_rows(307)


def test_bins_follow_bars() -> None:
    x = np.array([np.nan, -3, -1, 0, 1, 2, 2.5, 3, 10, 1000, 1e6])
    # ln(3)^2 = 1.21, ln(10)^2 = 5.30, ln(1000)^2 = 47.7, ln(1e6)^2 = 190.9; 2.5 > 2 so it is binned too
    assert bin_numeric(x).tolist() == [0, -3, -1, 0, 1, 2, 0, 1, 5, 47, 190]


def test_value_counter_merges_chunks_exactly() -> None:
    rng = np.random.default_rng(3)
    chunks = [rng.integers(-50, 400, size=int(rng.integers(0, 300))) ** 3 for _ in range(40)]
    counter = ValueCounter(merge_at=64)  # merges many times along the way
    for chunk in chunks:
        counter.add(chunk)
    keys, counts = counter.result()
    expected = Counter(int(v) for chunk in chunks for v in chunk)
    assert keys.tolist() == sorted(expected)
    assert counts.tolist() == [expected[k] for k in sorted(expected)]


def test_two_streaming_passes_match_the_reference(rows: list[list[str]], tmp_path: Path) -> None:
    raw = write_criteo(tmp_path / "raw", rows)
    data = Criteo(source=str(raw), min_count=3, chunk_size=50).load(tmp_path / "cache")
    check_dataset(data)
    assert isinstance(data.X, np.memmap) and isinstance(data.y, np.memmap)
    assert isinstance(data.splits["train"], np.memmap)
    X_ref, vocab_ref = reference(rows, min_count=3)
    numeric = slice(0, len(NUMERIC))
    np.testing.assert_array_equal(data.X[:, numeric], X_ref[:, numeric])
    for j, name in enumerate(CATEGORICAL, start=len(NUMERIC)):
        assert sorted(data.vocab[name]) == sorted(vocab_ref[name]), name
        decoded = [data.vocab[name][i] if i > 1 else i for i in data.X[:, j]]
        expected = [vocab_ref[name][i] if i > 1 else i for i in X_ref[:, j]]
        assert decoded == expected, name  # same value (or missing/rare) in every row, whatever the tie order
        counts = np.bincount(data.X[:, j], minlength=data.fields[j].vocab_size)[2:]
        assert np.all(np.diff(counts) <= 0), name  # indices by descending frequency
    for name in NUMERIC:
        assert data.vocab[name] == vocab_ref[name]
    assert data.y.tolist() == [float(r[0]) for r in rows]
    assert data.ts.tolist() == list(range(307))
    assert data.split_sizes() == {"train": 245, "valid": 31, "test": 31}  # floor(245.6), floor(276.3)
    np.testing.assert_array_equal(data.splits["valid"], np.arange(245, 276))
    assert data.user_field == "" and not data.user.any() and data.sequences == {}


def test_chunk_size_does_not_change_the_arrays(rows: list[list[str]], tmp_path: Path) -> None:
    raw = write_criteo(tmp_path / "raw", rows)
    small = Criteo(source=str(raw), chunk_size=7).load(tmp_path / "a")
    whole = Criteo(source=str(raw), chunk_size=10_000).load(tmp_path / "b")
    assert small.fingerprint == whole.fingerprint  # chunk_size is not part of the key
    np.testing.assert_array_equal(small.X, whole.X)
    assert small.vocab == whole.vocab
    X_ref, _ = reference(rows, min_count=10)
    np.testing.assert_array_equal(small.X[:, : len(NUMERIC)], X_ref[:, : len(NUMERIC)])
    assert int((small.X == 1).sum()) == int((X_ref == 1).sum())  # rare values, default min_count 10


def test_values_that_look_like_numbers_stay_strings_across_chunks(tmp_path: Path) -> None:
    values = ["00000123", "00000123", "0000abcd", "00000123", "", "0000abcd"]
    rows = [["1", *[""] * 13, v, *["68fd1e64"] * 25] for v in values]
    data = Criteo(source=str(write_criteo(tmp_path / "raw", rows)), min_count=1, chunk_size=2).load(tmp_path / "c")
    c1 = len(NUMERIC)
    assert data.vocab["C1"] == ["unknown", "rare", "00000123", "0000abcd"]  # a chunk of only "00000123" is no int
    assert data.X[:, c1].tolist() == [2, 2, 3, 2, 0, 3]
    assert data.X[:, 0].tolist() == [0] * 6  # I1 missing everywhere


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def start(self, total: int, description: str) -> None:
        self.calls.append((description, total, 0))

    def advance(self, n: int = 1) -> None:
        d, total, done = self.calls[-1]
        self.calls[-1] = (d, total, done + n)

    def finish(self) -> None:
        pass


def test_both_passes_report_progress_over_the_file(rows: list[list[str]], tmp_path: Path) -> None:
    raw = write_criteo(tmp_path / "raw", rows)
    recorder = Recorder()
    with reporting(recorder):
        Criteo(source=str(raw), chunk_size=40).load(tmp_path / "cache")
    size = (raw / "train.txt").stat().st_size
    assert recorder.calls == [("criteo: counting values (pass 1 of 2)", size, size),
                              ("criteo: encoding (pass 2 of 2)", size, size)]


@pytest.mark.parametrize(("line", "message"), [
    ("2\t" + "\t" * 38 + "\n", r"criteo: .*train.txt: line 4: the label must be 0 or 1, got 2.0"),
    ("1\t" + "1\t" * 40 + "\n", r"criteo: .*train.txt: malformed line after row \d+: .*Expected 40 fields in line 4, "
                                r"saw 42"),
])
def test_malformed_lines_are_data_errors(rows: list[list[str]], tmp_path: Path, line: str, message: str) -> None:
    raw = write_criteo(tmp_path / "raw", rows[:3])
    with open(raw / "train.txt", "a", encoding="ascii") as f:
        f.write(line)
    with pytest.raises(DataError, match=message):
        Criteo(source=str(raw)).load(tmp_path / "cache")
    assert not list((tmp_path / "cache" / "preprocessed").glob("criteo-*"))  # no half-written cache entry


def test_missing_train_txt_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        Criteo().load(tmp_path / "cache")
    msg = str(err.value)
    assert msg.startswith(f"criteo: raw files not found: put train.txt in {tmp_path / 'cache' / 'raw' / 'criteo'}")
    assert "accept Criteo's licence" in msg and "\n" not in msg
