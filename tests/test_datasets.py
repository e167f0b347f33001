"""Built-in datasets, the preprocessing cache, long-tail buckets and text rendering.

MovieLens is parsed from small files written here in both official layouts (GroupLens's ``u.*`` and
RecBole's ``ml-100k.*``); the real data is only read by the ``slow`` test, from the recbole wheel.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ctrbench.data.buckets import headtail_item_masks, longtail_masks
from ctrbench.data.cache import cache_root, cached_dataset, key_hash
from ctrbench.data.types import CTRData, Field
from ctrbench.errors import DataError, PluginError
from ctrbench.registry import Registry
from ctrbench.text import item_texts, render_row, render_rows
from ctrbench_datasets import movielens, plugin
from ctrbench_datasets.movielens import MovieLens100K, split_title_year
from ctrbench_datasets.synthetic import BLOCK, Synthetic

# -- tiny MovieLens in both layouts -------------------------------------------------------------------

# (user, item, rating, timestamp) in file order; five rating-3 rows, a timestamp tie (100) in file order.
RATINGS = [
    (1, 1, 5, 100), (2, 6, 3, 90), (3, 267, 4, 110), (1, 543, 2, 95), (4, 1412, 5, 120),
    (2, 1, 4, 100), (3, 6, 1, 130), (4, 543, 3, 105), (1, 1412, 4, 140), (2, 267, 5, 115),
    (3, 1, 2, 125), (4, 6, 4, 150), (1, 6, 3, 135), (2, 543, 5, 160), (3, 1412, 4, 145),
    (4, 267, 1, 170), (1, 267, 4, 155), (2, 1412, 2, 165), (3, 543, 5, 175), (4, 1, 4, 180),
    (1, 1, 4, 185), (2, 6, 5, 190), (3, 267, 3, 195), (4, 543, 4, 200), (1, 1412, 3, 205),
]
USERS = [(1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"),
         (3, 23, "M", "writer", "02138"), (4, 24, "M", "technician", "43537")]
GENRES = movielens.GENRES
CHILDREN = "Children's"


def _flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in GENRES)


GROUPLENS_ITEMS = [
    f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags('Animation', CHILDREN, 'Comedy')}",
    f"6|Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)|01-Jan-1995||http://x|{_flags('Drama')}",
    f"267|unknown||||{_flags('unknown')}",
    f"543|Misérables, Les (1995)|01-Jan-1995||http://x|{_flags('Drama', 'Musical')}",
    f"1412|Land Before Time III: The Time of the Great Giving (1995) (V)|01-Jan-1995||http://x|"
    f"{_flags('Animation', CHILDREN)}",
]
RECBOLE_ITEMS = [
    "1\tToy Story\t1995\tAnimation Children's Comedy",
    "6\tShanghai Triad (Yao a yao yao dao waipo qiao)\t1995\tDrama",
    "267\tunkonwn\tunkonwn\tunknown",
    "543\tMisérables, Les\t1995\tDrama Musical",
    "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation Children's",
]
KEPT = [r for r in RATINGS if r[2] != 3]
KEPT_BY_TIME = sorted(KEPT, key=lambda r: r[3])  # Python's sort is stable, as the split must be


def write_grouplens(root: Path) -> Path:
    d = root / "ml-100k"
    d.mkdir(parents=True)
    (d / "u.data").write_bytes("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS).encode("latin-1"))
    (d / "u.user").write_bytes("".join("|".join(map(str, u)) + "\n" for u in USERS).encode("latin-1"))
    (d / "u.item").write_bytes("".join(line + "\n" for line in GROUPLENS_ITEMS).encode("latin-1"))
    return d


def write_grouplens_zip(root: Path) -> Path:
    d = write_grouplens(root / "unzipped")
    path = root / "ml-100k.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name in ("u.data", "u.item", "u.user"):
            z.write(d / name, f"ml-100k/{name}")
    return path


def write_recbole(root: Path) -> Path:
    d = root / "recbole"
    d.mkdir(parents=True)
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    inter += "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS)
    user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    user += "".join("\t".join(map(str, u)) + "\n" for u in USERS)
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    item += "".join(line + "\n" for line in RECBOLE_ITEMS)
    for name, text in (("inter", inter), ("user", user), ("item", item)):
        (d / f"ml-100k.{name}").write_text(text, encoding="utf-8")
    return d


@pytest.fixture()
def grouplens_dir(tmp_path: Path) -> Path:
    return write_grouplens(tmp_path / "gl")


@pytest.fixture()
def recbole_dir(tmp_path: Path) -> Path:
    return write_recbole(tmp_path / "rb")


def _equal(a: CTRData, b: CTRData) -> None:
    assert a.fields == b.fields
    assert a.vocab == b.vocab
    for name in ("X", "y", "ts", "user", "item"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(a.splits[s], b.splits[s], err_msg=s)


def test_both_layouts_give_identical_samples(grouplens_dir: Path, recbole_dir: Path, tmp_path: Path) -> None:
    gl = MovieLens100K(source=str(grouplens_dir)).load(tmp_path / "c1")
    rb = MovieLens100K(source=str(recbole_dir)).load(tmp_path / "c2")
    _equal(gl, rb)
    assert gl.fingerprint != rb.fingerprint  # different raw files, so different cache keys


def test_titles_and_years_are_normalised_the_same_way() -> None:
    assert split_title_year("Toy Story (1995)") == ("Toy Story", "1995")
    assert split_title_year("Land Before Time III: The Time of the Great Giving (1995) (V)") == (
        "Land Before Time III: The Time of the Great Giving", "1995")
    assert split_title_year("Land Before Time III: The Time of the Great Giving (1995)", "V") == (
        "Land Before Time III: The Time of the Great Giving", "1995")
    assert split_title_year("Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)") == (
        "Shanghai Triad (Yao a yao yao dao waipo qiao)", "1995")
    assert split_title_year("unknown") == ("", "")
    assert split_title_year("unkonwn", "unkonwn") == ("", "")


def test_rating_3_is_dropped_and_labels_are_rating_at_least_4(recbole_dir: Path, tmp_path: Path) -> None:
    data = MovieLens100K(source=str(recbole_dir)).load(tmp_path)
    assert data.num_samples == 20 == len(RATINGS) - 5
    assert data.y.dtype == np.float32
    assert data.y.tolist() == [1.0 if r >= 4 else 0.0 for _, _, r, _ in KEPT_BY_TIME]
    users = [data.vocab["user_id"][i] for i in data.X[:, 0]]
    items = [data.vocab["item_id"][i] for i in data.X[:, 1]]
    assert list(zip(users, items, data.ts.tolist(), strict=True)) == [
        (str(u), str(i), t) for u, i, _, t in KEPT_BY_TIME]


def test_keeping_neutral_ratings_and_another_threshold(recbole_dir: Path, tmp_path: Path) -> None:
    data = MovieLens100K(source=str(recbole_dir), drop_rating=None, positive_min_rating=5).load(tmp_path)
    assert data.num_samples == len(RATINGS)
    assert int(data.y.sum()) == sum(r == 5 for _, _, r, _ in RATINGS)


def test_temporal_8_1_1_split(recbole_dir: Path, tmp_path: Path) -> None:
    data = MovieLens100K(source=str(recbole_dir)).load(tmp_path)
    assert data.split_sizes() == {"train": 16, "valid": 2, "test": 2}
    np.testing.assert_array_equal(np.concatenate([data.splits[s] for s in ("train", "valid", "test")]),
                                  np.arange(20))
    ts = data.ts
    assert ts[data.splits["train"]].max() <= ts[data.splits["valid"]].min()
    assert ts[data.splits["valid"]].max() <= ts[data.splits["test"]].min()
    assert np.all(np.diff(ts) >= 0)


def test_fields_and_vocab(recbole_dir: Path, tmp_path: Path) -> None:
    data = MovieLens100K(source=str(recbole_dir)).load(tmp_path)
    assert [(f.name, f.text_name) for f in data.fields] == [
        ("user_id", "user id"), ("item_id", "item id"), ("age", "age"), ("gender", "gender"),
        ("occupation", "occupation"), ("zip_code", "zip code"), ("title", "title"),
        ("release_year", "release year"), ("genres", "genres")]
    assert all(f.kind == "categorical" and f.vocab_size == len(data.vocab[f.name]) for f in data.fields)
    # frequency over kept rows, descending, ties broken by value (as text): every user has 5 kept rows;
    # item 1 has 5, items 267/543/1412 have 4, item 6 has 3
    assert data.vocab["user_id"] == ["unknown", "1", "2", "3", "4"]
    assert data.vocab["item_id"] == ["unknown", "1", "1412", "267", "543", "6"]
    assert data.vocab["gender"] == ["unknown", "M", "F"]
    assert data.vocab["age"] == ["unknown", "24", "23", "53"]  # 24: users 1 and 4
    # item 267 has no title or year in either layout: index 0
    row_267 = int(np.flatnonzero(data.X[:, 1] == data.vocab["item_id"].index("267"))[0])
    assert data.X[row_267, data.field_index("title")] == 0
    assert data.X[row_267, data.field_index("release_year")] == 0
    assert set(data.vocab["title"]) == {"unknown", "Toy Story", "Shanghai Triad (Yao a yao yao dao waipo qiao)",
                                        "Misérables, Les", "Land Before Time III: The Time of the Great Giving"}
    assert data.vocab["release_year"] == ["unknown", "1995"]
    assert "Animation Children's Comedy" in data.vocab["genres"]
    assert data.vocab["zip_code"].count("02138") == 1  # leading zero kept: values are text
    np.testing.assert_array_equal(data.user, data.X[:, 0])
    np.testing.assert_array_equal(data.item, data.X[:, 1])


def test_grouplens_zip_through_a_checksummed_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      recbole_dir: Path) -> None:
    zip_path = write_grouplens_zip(tmp_path / "remote")
    monkeypatch.setattr(movielens, "GROUPLENS_URL", zip_path.as_uri())
    monkeypatch.setattr(movielens, "GROUPLENS_CHECKSUM", f"sha256:{hashlib.sha256(zip_path.read_bytes()).hexdigest()}")
    data = MovieLens100K(source="grouplens").load(tmp_path / "cache")
    assert (tmp_path / "cache" / "downloads" / "ml-100k.zip").is_file()
    _equal(data, MovieLens100K(source=str(recbole_dir)).load(tmp_path / "cache2"))


def test_corrupt_raw_file_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zip_path = write_grouplens_zip(tmp_path / "remote")
    good = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    with open(zip_path, "ab") as f:
        f.write(b"garbage")
    bad = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    monkeypatch.setattr(movielens, "GROUPLENS_URL", zip_path.as_uri())
    monkeypatch.setattr(movielens, "GROUPLENS_CHECKSUM", f"sha256:{good}")
    with pytest.raises(DataError, match=f"expected sha256:{good}, got sha256:{bad}"):
        MovieLens100K(source="grouplens").load(tmp_path / "cache")
    assert not (tmp_path / "cache" / "preprocessed").exists()


def test_unknown_source_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="neither 'auto', 'grouplens', 'recbole' nor an existing directory"):
        MovieLens100K(source=str(tmp_path / "nowhere")).load(tmp_path)


def test_directory_without_either_layout_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds neither"):
        MovieLens100K(source=str(tmp_path / "empty")).load(tmp_path)


# -- the preprocessing cache --------------------------------------------------------------------------

def _counting_build(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = MovieLens100K.build

    def build(self: MovieLens100K, raw: Path) -> CTRData:
        calls.append(1)
        return original(self, raw)

    monkeypatch.setattr(MovieLens100K, "build", build)
    return calls


def test_second_load_hits_the_cache(recbole_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_build(monkeypatch)
    first = MovieLens100K(source=str(recbole_dir)).load(tmp_path)
    second = MovieLens100K(source=str(recbole_dir)).load(tmp_path)
    assert len(calls) == 1
    assert first.fingerprint == second.fingerprint == MovieLens100K(source=str(recbole_dir)).fingerprint(tmp_path)
    assert len(first.fingerprint) == 64
    _equal(first, second)
    [cached] = list((tmp_path / "preprocessed").iterdir())
    assert cached.name == f"movielens-100k-{first.fingerprint[:16]}"
    assert sorted(p.name for p in cached.iterdir()) == sorted(
        ["meta.json", "X.npy", "y.npy", "ts.npy", "user.npy", "item.npy",
         "split_train.npy", "split_valid.npy", "split_test.npy", "seq_history.npy"])


def test_changed_config_gets_a_new_key(recbole_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_build(monkeypatch)
    a = MovieLens100K(source=str(recbole_dir)).load(tmp_path)
    b = MovieLens100K(source=str(recbole_dir), split=(0.7, 0.15, 0.15)).load(tmp_path)
    c = MovieLens100K(source=str(recbole_dir), positive_min_rating=5).load(tmp_path)
    assert len(calls) == 3
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    assert b.split_sizes() == {"train": 14, "valid": 3, "test": 3}
    assert int(c.y.sum()) < int(a.y.sum())


def test_changed_raw_file_gets_a_new_key(recbole_dir: Path, tmp_path: Path) -> None:
    a = MovieLens100K(source=str(recbole_dir)).load(tmp_path)
    with open(recbole_dir / "ml-100k.inter", "a", encoding="utf-8") as f:
        f.write("4\t6\t5\t300\n")
    b = MovieLens100K(source=str(recbole_dir)).load(tmp_path)
    assert a.fingerprint != b.fingerprint
    assert b.num_samples == a.num_samples + 1


def test_unreadable_cache_is_rebuilt(recbole_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_build(monkeypatch)
    a = MovieLens100K(source=str(recbole_dir)).load(tmp_path)
    [cached] = list((tmp_path / "preprocessed").iterdir())
    (cached / "X.npy").write_bytes(b"not an array")
    b = MovieLens100K(source=str(recbole_dir)).load(tmp_path)
    assert len(calls) == 2
    _equal(a, b)


def test_failed_build_leaves_no_cache_directory(tmp_path: Path) -> None:
    def build() -> CTRData:
        raise DataError("boom")

    with pytest.raises(DataError, match="boom"):
        cached_dataset(tmp_path, {"name": "x", "version": 1, "config": {}}, build)
    assert list((tmp_path / "preprocessed").iterdir()) == []


def test_cache_root_honours_ctrbench_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTRBENCH_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("CTRBENCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "ctrbench"


def test_cache_key_must_name_version_and_config() -> None:
    with pytest.raises(DataError, match=r"lacks \['version'\]"):
        key_hash({"name": "x", "config": {}})
    assert key_hash({"name": "x", "version": 1, "config": {"a": 1, "b": 2}}) == key_hash(
        {"config": {"b": 2, "a": 1}, "version": 1, "name": "x"})
    assert key_hash({"name": "x", "version": 1, "config": {}}) != key_hash({"name": "x", "version": 2, "config": {}})


# -- synthetic ------------------------------------------------------------------------------------------

def _auc(score: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_synthetic_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = Synthetic(num_samples=3000, seed=7).load(tmp_path / "a")
    b = Synthetic(num_samples=3000, seed=7).load(tmp_path / "b")
    c = Synthetic(num_samples=3000, seed=8).load(tmp_path / "c")
    _equal(a, b)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert not np.array_equal(a.X, c.X)


def test_synthetic_shape_fields_and_split(tmp_path: Path) -> None:
    data = Synthetic(num_samples=1000, num_fields=5, vocab_size=30).load(tmp_path)
    assert [f.name for f in data.fields] == ["user_id", "item_id", "f2", "f3", "f4"]
    assert all(f.vocab_size == 31 for f in data.fields)
    assert data.vocab["user_id"][:3] == ["unknown", "u1", "u2"]
    assert data.vocab["item_id"][17] == "i17"
    assert data.X.shape == (1000, 5) and data.X.min() >= 1 and data.X.max() <= 30
    assert data.split_sizes() == {"train": 800, "valid": 100, "test": 100}
    np.testing.assert_array_equal(data.ts, np.arange(1000))
    counts = np.bincount(data.X[:, 0], minlength=31)
    assert counts[1] > counts[10] > counts[30]  # Zipf-like: index 1 the most frequent


def test_synthetic_signal_is_planted(tmp_path: Path) -> None:
    gen = Synthetic(num_samples=20000, seed=3)
    data = gen.load(tmp_path)
    logit = gen.planted_logit(np.asarray(data.X))
    assert _auc(logit, data.y) > 0.7
    first_order_only = Synthetic(num_samples=20000, seed=3, interaction_strength=0.0).planted_logit(np.asarray(data.X))
    assert _auc(logit, data.y) - _auc(first_order_only, data.y) > 0.03  # the user x item term matters


def test_synthetic_memmap_equals_in_memory(tmp_path: Path) -> None:
    n = 2 * BLOCK + 123
    mem = Synthetic(num_samples=n, seed=1).load(tmp_path / "mem")
    mm = Synthetic(num_samples=n, seed=1, memmap=True, chunk_size=50_000).load(tmp_path / "mm")
    for name in ("X", "y", "ts", "user", "item"):
        assert isinstance(getattr(mm, name), np.memmap), name
        assert not isinstance(getattr(mem, name), np.memmap), name
    assert isinstance(mm.splits["train"], np.memmap)
    _equal(mem, mm)


# -- long-tail buckets ----------------------------------------------------------------------------------

def _bucket_data() -> CTRData:
    """Users 1..20 and items 1..10 with train counts equal to their index; test rows cover every entity
    plus a user (21) and an item (11) never seen in train."""
    train_u = np.repeat(np.arange(1, 21), np.arange(1, 21))
    train_i = np.full(len(train_u), 10)  # item k occurs k times, item 10 takes the remaining rows
    train_i[:55] = np.repeat(np.arange(1, 11), np.arange(1, 11))
    test_u = np.concatenate([np.arange(1, 22), np.arange(1, 22)])
    test_i = np.concatenate([np.resize(np.arange(1, 12), 21), np.resize(np.arange(11, 0, -1), 21)])
    user = np.concatenate([train_u, test_u])
    item = np.concatenate([train_i, test_i])
    n, n_train = len(user), len(train_u)
    X = np.stack([user, item], axis=1).astype(np.int64)
    fields = [Field("user_id", "categorical", 22), Field("item_id", "categorical", 12)]
    return CTRData("buckets", fields, X, np.zeros(n, np.float32), np.arange(n), user, item,
                   {"train": np.arange(n_train), "valid": np.arange(0), "test": np.arange(n_train, n)})


def test_longtail_masks_partition_the_split_with_the_right_tail() -> None:
    data = _bucket_data()
    masks = longtail_masks(data, "test", tail_fraction=0.1)
    test = data.splits["test"]
    assert all(m.shape == (len(test),) and m.dtype == bool for m in masks.values())
    crossings = [masks[f"{u}&{i}"] for u in ("user_tail", "user_head") for i in ("item_tail", "item_head")]
    np.testing.assert_array_equal(np.sum(crossings, axis=0), np.ones(len(test)))  # a partition
    # bottom 10% of the 20 train users = users 1 and 2; user 21 never occurs in train
    assert sorted(set(data.user[test][masks["user_tail"]].tolist())) == [1, 2, 21]
    # bottom 10% of the 10 train items = item 1; item 11 never occurs in train
    assert sorted(set(data.item[test][masks["item_tail"]].tolist())) == [1, 11]
    np.testing.assert_array_equal(masks["user_head"], ~masks["user_tail"])
    np.testing.assert_array_equal(masks["user_tail&item_head"], masks["user_tail"] & masks["item_head"])


def test_longtail_ties_are_broken_by_index() -> None:
    data = _bucket_data()
    masks = longtail_masks(data, "test", tail_fraction=0.25)  # 5 of 20 users, 2.5 -> 3 of 10 items
    assert sorted(set(data.user[data.splits["test"]][masks["user_tail"]].tolist())) == [1, 2, 3, 4, 5, 21]
    assert sorted(set(data.item[data.splits["test"]][masks["item_tail"]].tolist())) == [1, 2, 3, 11]


def test_headtail_item_masks_take_the_top_20_percent() -> None:
    data = _bucket_data()
    masks = headtail_item_masks(data, "test", head_fraction=0.2)
    items = data.item[data.splits["test"]]
    assert sorted(set(items[masks["head"]].tolist())) == [9, 10]  # the two most frequent of 10 train items
    np.testing.assert_array_equal(masks["tail"], ~masks["head"])
    assert masks["head"].sum() + masks["tail"].sum() == len(items)


def test_unknown_split_is_a_data_error() -> None:
    with pytest.raises(DataError, match="unknown split 'dev'"):
        longtail_masks(_bucket_data(), "dev")


# -- text rendering ---------------------------------------------------------------------------------------

def _text_data(fingerprint: str = "") -> CTRData:
    fields = [Field("user_id", "categorical", 3, "user id"), Field("item_id", "categorical", 3, "item id"),
              Field("age", "categorical", 3), Field("gender", "categorical", 3),
              Field("title", "categorical", 3), Field("genres", "categorical", 3)]
    vocab = {"user_id": ["unknown", "12", "7"], "item_id": ["unknown", "1", "2"], "age": ["unknown", "25", "40"],
             "gender": ["unknown", "M", "F"], "title": ["unknown", "Toy Story", "Heat"],
             "genres": ["unknown", "Animation Children's Comedy", "Action Crime Thriller"]}
    X = np.array([[1, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2], [1, 2, 1, 1, 2, 2], [2, 1, 0, 2, 1, 1]], dtype=np.int64)
    n = len(X)
    return CTRData("text", fields, X, np.zeros(n, np.float32), np.arange(n), X[:, 0], X[:, 1],
                   {"train": np.arange(2), "valid": np.arange(2, 3), "test": np.arange(3, 4)}, vocab,
                   fingerprint=fingerprint)


@pytest.mark.parametrize("fingerprint", ["", "f" * 64])
def test_render_row_what_is_what(fingerprint: str) -> None:
    data = _text_data(fingerprint)
    assert render_row(data, 0) == ("user id is 12. item id is 1. age is 25. gender is M. title is Toy Story. "
                                   "genres is Animation Children's Comedy.")
    assert render_row(data, 3, ["title", "age"]) == "title is Toy Story. age is unknown."
    assert render_rows(data, [1, 0], ["gender"]) == ["gender is F.", "gender is M."]
    assert render_rows(data, np.arange(0)) == []


def test_item_texts_are_indexed_by_item() -> None:
    data = _text_data("e" * 64)
    assert item_texts(data) == ["", "title is Toy Story. genres is Animation Children's Comedy.",
                                "title is Heat. genres is Action Crime Thriller."]
    assert item_texts(data, ["title"]) == ["", "title is Toy Story.", "title is Heat."]


def test_render_unknown_field_is_a_data_error() -> None:
    with pytest.raises(DataError, match="has no field 'rating'"):
        render_row(_text_data(), 0, ["rating"])


def test_movielens_row_renders_as_text(recbole_dir: Path, tmp_path: Path) -> None:
    data = MovieLens100K(source=str(recbole_dir)).load(tmp_path)
    row = int(np.flatnonzero(data.ts == 100)[0])  # user 1 rates Toy Story at t=100 (first of the tie)
    assert render_row(data, row) == ("user id is 1. item id is 1. age is 24. gender is M. occupation is technician. "
                                     "zip code is 85711. title is Toy Story. release year is 1995. "
                                     "genres is Animation Children's Comedy.")


# -- registration ---------------------------------------------------------------------------------------

def test_plugin_registers_the_datasets_with_typed_config() -> None:
    registry: Registry[object] = Registry("datasets")

    def register(name: str, factory: object, **meta: object) -> None:
        registry.add(name, factory, plugin="builtin-datasets", **meta)  # type: ignore[arg-type]

    plugin.ctrbench_register_datasets(register=register)
    assert list(registry) == ["amazon", "amazon-sports", "amazon-toys", "bookcrossing", "criteo", "goodreads",
                              "movielens-100k", "movielens-1m", "synthetic"]
    assert registry.get("movielens-100k").paper == "Harper & Konstan, The MovieLens Datasets, ACM TiiS 2015"
    assert isinstance(registry.get("synthetic").create(num_samples=100), Synthetic)
    with pytest.raises(PluginError, match="did you mean 'num_samples'"):
        registry.get("synthetic").create(num_sample=100)


# -- the real MovieLens-100K ------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_movielens_100k_from_the_recbole_wheel(tmp_path: Path) -> None:
    data = MovieLens100K(source="recbole").load(tmp_path)
    n = 100_000 - 27_145
    assert data.num_samples == n == 72_855
    assert len(np.unique(data.user)) <= 943 and len(np.unique(data.item)) <= 1682
    assert data.fields[0].vocab_size - 1 == len(np.unique(data.user))
    assert int(data.y.sum()) == 34_174 + 21_201
    assert float(data.y.mean()) == pytest.approx((34_174 + 21_201) / 72_855)
    assert data.split_sizes() == {"train": 58_284, "valid": 7_285, "test": 7_286}
    assert np.all(np.diff(data.ts) >= 0)
    meta = json.loads(next((tmp_path / "preprocessed").iterdir()).joinpath("meta.json").read_text())
    assert meta["key"]["raw"] == {name: checksum for name, checksum in movielens.RECBOLE_FILES.items()}
    title = data.vocab["title"][data.X[np.flatnonzero(data.item == data.vocab["item_id"].index("1412"))[0], 6]]
    assert title == "Land Before Time III: The Time of the Great Giving"
