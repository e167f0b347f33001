"""User histories for DIN/DIEN (ctrbench/data/history.py) as MovieLens and synthetic build them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from ctrbench.data.history import user_history
from ctrbench.data.types import CTRData, Field
from ctrbench.errors import DataError
from ctrbench.testing import check_dataset
from ctrbench.trainer import DeviceData
from ctrbench_ctr.dien import DIEN
from ctrbench_ctr.din import DIN
from ctrbench_datasets import movielens
from ctrbench_datasets.movielens import MovieLens100K
from ctrbench_datasets.synthetic import BLOCK, Synthetic

# (user, item, rating, timestamp) in file order. Label = rating >= 4; rating 3 is dropped. Users are
# interleaved; same-second rows of one user are in a known file order (the later row is "more recent").
RATINGS = [
    (2, 20, 5, 100), (1, 10, 5, 100), (1, 20, 4, 100),  # user 1: two positives at the same second
    (2, 30, 4, 105), (2, 10, 4, 105),  # user 2: tie, both positive
    (1, 30, 1, 110), (2, 40, 1, 110), (2, 50, 5, 110),  # user 2: tie of a negative and a positive
    (1, 40, 3, 115),  # dropped: neither a sample nor history
    (1, 50, 5, 120), (2, 60, 5, 120), (1, 60, 4, 130), (1, 10, 2, 140), (1, 70, 5, 150),
]
# (user, item, ts) → history, most recent first, worked out by hand.
EXPECTED = {
    (1, 10, 100): [], (1, 20, 100): [],  # the same second is not "before"
    (1, 30, 110): [20, 10],  # the tie at 100: the later row (item 20) first
    (1, 50, 120): [20, 10],  # item 30 was a negative
    (1, 60, 130): [50, 20, 10],
    (1, 10, 140): [60, 50, 20, 10],
    (1, 70, 150): [60, 50, 20, 10],  # the negative at 140 and the dropped rating 3 are not there
    (2, 20, 100): [], (2, 30, 105): [20], (2, 10, 105): [20],
    (2, 40, 110): [10, 30, 20], (2, 50, 110): [10, 30, 20],
    (2, 60, 120): [50, 10, 30, 20],  # the positive at 110, not the negative
}
GENRE_FLAGS = "|".join(["0"] * 18 + ["1"])


def write_grouplens(root: Path) -> Path:
    d = root / "ml-100k"
    d.mkdir(parents=True)
    (d / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS), encoding="latin-1")
    (d / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n", encoding="latin-1")
    items = sorted({i for _, i, _, _ in RATINGS})
    (d / "u.item").write_text("".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{GENRE_FLAGS}\n" for i in items),
                              encoding="latin-1")
    return d


def _raw_history(data: CTRData, name: str = "history") -> dict[tuple[int, int, int], list[int]]:
    vocab = data.vocab
    out = {}
    for row in range(data.num_samples):
        user = int(vocab["user_id"][data.X[row, 0]])
        item = int(vocab["item_id"][data.X[row, 1]])
        out[(user, item, int(data.ts[row]))] = [int(vocab["item_id"][j]) for j in data.sequences[name][row] if j]
    return out


def test_movielens_history_is_the_earlier_liked_movies_most_recent_first(tmp_path: Path) -> None:
    data = MovieLens100K(source=str(write_grouplens(tmp_path / "raw"))).load(tmp_path / "cache")
    check_dataset(data)
    assert data.num_samples == len(EXPECTED) == len(RATINGS) - 1
    assert data.sequences["history"].shape == (13, 20) and data.sequences["history"].dtype == np.int64
    assert data.sequence_fields == [Field("history", "sequence", len(data.vocab["item_id"]), "recently liked movies",
                                          shares="item_id")]  # `shares` survives the cache round trip
    assert _raw_history(data) == EXPECTED


def test_movielens_history_is_truncated_to_the_most_recent(tmp_path: Path) -> None:
    data = MovieLens100K(source=str(write_grouplens(tmp_path / "raw")), history_length=3).load(tmp_path / "cache")
    assert data.sequences["history"].shape == (13, 3)
    assert _raw_history(data) == {k: v[:3] for k, v in EXPECTED.items()}


def test_history_length_is_part_of_the_cache_key(tmp_path: Path) -> None:
    raw = write_grouplens(tmp_path / "raw")
    a = MovieLens100K(source=str(raw)).load(tmp_path / "cache")
    b = MovieLens100K(source=str(raw), history_length=0).load(tmp_path / "cache")
    c = MovieLens100K(source=str(raw), history_length=3).load(tmp_path / "cache")
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    assert b.sequences == {} and b.sequence_fields == []
    np.testing.assert_array_equal(a.X, b.X)
    assert movielens.PREPROCESS_VERSION >= 2  # caches from before histories existed are not reused


@pytest.mark.parametrize("bad", [-1, 2.5])
def test_a_bad_history_length_is_a_data_error(bad: float) -> None:
    with pytest.raises(DataError, match="history_length must be a non-negative integer"):
        MovieLens100K(history_length=bad)
    with pytest.raises(DataError, match="history_length must be a non-negative integer"):
        Synthetic(history_length=bad)


# -- an independent reference: walk time forward, one timestamp at a time ---------------------------------

def brute_force_history(user: np.ndarray, ts: np.ndarray, y: np.ndarray, item: np.ndarray,
                        length: int) -> np.ndarray:
    """Per sample, the user's positives seen at strictly earlier timestamps, most recent first (a plain loop)."""
    liked: dict[int, list[int]] = defaultdict(list)  # per user, oldest first
    out = np.zeros((len(user), length), np.int64)
    order = np.lexsort((np.arange(len(ts)), ts))
    start = 0
    while start < len(order):
        stop = start
        while stop < len(order) and ts[order[stop]] == ts[order[start]]:
            stop += 1
        group = order[start:stop]
        for r in group:  # every row of this second sees only what came before it
            recent = liked[int(user[r])][::-1][:length]
            out[r, :len(recent)] = recent
        for r in group:  # then this second's positives become history
            if y[r] == 1:
                liked[int(user[r])].append(int(item[r]))
        start = stop
    return out


def test_vectorised_history_equals_the_brute_force_with_many_ties() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    user, ts = rng.integers(1, 30, n), rng.integers(0, 300, n)  # about 17 rows per second: many ties
    y, item = rng.integers(0, 2, n).astype(np.float32), rng.integers(1, 50, n)
    for length in (0, 1, 7, 40):
        np.testing.assert_array_equal(user_history(user, ts, y, item, length, chunk_size=777),
                                      brute_force_history(user, ts, y, item, length))


def test_synthetic_history_has_no_leakage_at_real_size(tmp_path: Path) -> None:
    data = Synthetic(num_samples=100_000, vocab_size=200, seed=5).load(tmp_path)
    check_dataset(data)
    hist = np.asarray(data.sequences["history"])
    assert hist.shape == (100_000, 20)
    assert data.sequence_fields[0].shares == "item_id" and data.sequence_fields[0].vocab_size == 201
    user, ts, y, item = (np.asarray(a) for a in (data.user, data.ts, data.y, data.item))
    np.testing.assert_array_equal(hist, brute_force_history(user, ts, y, item, 20))
    # and directly: every history entry is a positive of the same user at an earlier time
    first_liked = {}  # (user, item) → earliest ts at which the user liked the item
    for r in np.flatnonzero(y == 1)[::-1]:
        first_liked[(int(user[r]), int(item[r]))] = int(ts[r])
    rows, cols = np.nonzero(hist)
    never = 1 << 62
    earliest = np.array([first_liked.get((int(user[r]), int(hist[r, c])), never)
                         for r, c in zip(rows, cols, strict=True)])
    assert (earliest < ts[rows]).all()
    lengths = (hist != 0).sum(1)
    assert ((hist[:, 1:] != 0) <= (hist[:, :-1] != 0)).all()  # left-aligned: no item after padding
    assert lengths.max() == 20 and (lengths == 0).any()


def test_synthetic_memmap_history_equals_in_memory(tmp_path: Path) -> None:
    n = 2 * BLOCK + 123
    mem = Synthetic(num_samples=n, seed=1, history_length=5).load(tmp_path / "mem")
    mm = Synthetic(num_samples=n, seed=1, history_length=5, memmap=True, chunk_size=50_000).load(tmp_path / "mm")
    assert isinstance(mm.sequences["history"], np.memmap)
    np.testing.assert_array_equal(mem.sequences["history"], mm.sequences["history"])
    assert Synthetic(num_samples=100, history_length=0).load(tmp_path / "none").sequences == {}


@pytest.mark.parametrize("factory", [DIN, DIEN])
def test_a_loaded_dataset_trains_a_sequence_model(tmp_path: Path, factory) -> None:
    data = Synthetic(num_samples=2000, num_fields=4, vocab_size=30).load(tmp_path)
    torch.manual_seed(0)
    model = factory([*data.fields, *data.sequence_fields], embed_dim=4, hidden_units=(8,))
    batch = DeviceData(data, torch.device("cpu")).batch(torch.arange(64))
    assert batch.sequences["history"].shape == (64, 20)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch.y)
    loss.backward()
    assert torch.isfinite(loss) and model.embedding.weight.grad is not None


@pytest.mark.slow
def test_real_movielens_100k_has_a_leak_free_history(tmp_path: Path) -> None:
    data = MovieLens100K(source="recbole").load(tmp_path)
    check_dataset(data)
    hist = np.asarray(data.sequences["history"])
    assert hist.shape == (72_855, 20)
    user, item = data.X[:, 0], data.X[:, 1]
    np.testing.assert_array_equal(hist, brute_force_history(user, data.ts, data.y, item, 20))
    lengths = (hist != 0).sum(1)
    assert (lengths == 0).sum() >= 943 // 2  # at least most users' first ratings have no history
    assert (lengths == 20).mean() > 0.5
