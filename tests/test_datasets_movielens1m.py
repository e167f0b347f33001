"""MovieLens-1M from small files in GroupLens's format (``::``-separated, latin-1), local and downloaded."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_data_sources import LocalServer
from test_history import brute_force_history

from ctrbench.errors import DataError
from ctrbench.testing import check_dataset
from ctrbench.text import render_row
from ctrbench_datasets import movielens1m
from ctrbench_datasets.movielens1m import MovieLens1M

# (user, movie, rating, timestamp) in file order; four rating-3 rows; ties at 100 and 140 in file order.
RATINGS = [
    (1, 10, 5, 100), (2, 10, 4, 100), (3, 20, 3, 105), (1, 20, 2, 110), (2, 30, 5, 90),
    (3, 10, 1, 120), (1, 30, 4, 130), (2, 20, 3, 125), (3, 30, 5, 140), (1, 40, 4, 140),
    (2, 40, 2, 160), (3, 40, 4, 170), (1, 50, 3, 175), (2, 50, 5, 180), (3, 50, 4, 185),
    (1, 60, 5, 190), (2, 60, 3, 195), (3, 60, 2, 200), (1, 70, 4, 210), (2, 70, 4, 220),
    (3, 70, 5, 230), (1, 80, 1, 240), (2, 80, 4, 250), (3, 80, 4, 260),
]
USERS = ["1::F::1::10::48067", "2::M::56::16::70072", "3::M::25::4::55117-1234"]
MOVIES = ["10::Misérables, Les (1995)::Drama|Musical", "20::Toy Story (1995)::Animation|Children's|Comedy",
          "30::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi",
          "40::Heat (1995)::Action|Crime|Thriller", "50::Fargo (1996)::Crime|Drama|Thriller",
          "60::Babe (1995)::Children's|Comedy|Drama", "70::Casino (1995)::Drama|Thriller",
          "80::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi"]
KEPT = sorted((r for r in RATINGS if r[2] != 3), key=lambda r: r[3])  # stable: ties keep file order


def write_ml1m(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ratings.dat").write_bytes("".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in RATINGS).encode("latin-1"))
    (root / "users.dat").write_bytes("".join(line + "\n" for line in USERS).encode("latin-1"))
    (root / "movies.dat").write_bytes("".join(line + "\n" for line in MOVIES).encode("latin-1"))
    return root


def write_ml1m_zip(root: Path) -> Path:
    d = write_ml1m(root / "unzipped")
    root.mkdir(parents=True, exist_ok=True)
    path = root / "ml-1m.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name in ("ratings.dat", "users.dat", "movies.dat"):
            z.write(d / name, f"ml-1m/{name}")
        z.writestr("ml-1m/README", "MovieLens 1M")
    return path


def _raw(data, row: int) -> tuple[str, str]:
    return data.vocab["user_id"][data.X[row, 0]], data.vocab["item_id"][data.X[row, 5]]


def test_ratings_are_filtered_labelled_and_sorted_by_time(tmp_path: Path) -> None:
    data = MovieLens1M(source=str(write_ml1m(tmp_path / "raw"))).load(tmp_path / "cache")
    check_dataset(data)
    assert data.num_samples == 20 == len(RATINGS) - 4
    assert [_raw(data, i) for i in range(20)] == [(str(u), str(m)) for u, m, _, _ in KEPT]
    assert data.y.tolist() == [float(r >= 4) for _, _, r, _ in KEPT]
    assert int(data.y.sum()) == 15
    assert data.ts.tolist() == [t for *_, t in KEPT]
    assert data.split_sizes() == {"train": 16, "valid": 2, "test": 2}
    train, valid, test = (data.ts[data.splits[s]] for s in ("train", "valid", "test"))
    assert train.max() <= valid.min() and valid.max() <= test.min()


def test_fields_follow_clickprompt_with_readable_values(tmp_path: Path) -> None:
    data = MovieLens1M(source=str(write_ml1m(tmp_path / "raw"))).load(tmp_path / "cache")
    assert [(f.name, f.label) for f in data.fields] == [
        ("user_id", "user id"), ("gender", "gender"), ("age", "age"), ("occupation", "occupation"),
        ("zip_code", "zip code"), ("item_id", "movie id"), ("title", "title"), ("genres", "genres")]
    row = int(np.flatnonzero(data.ts == 100)[0])  # user 1 rates movie 10 (first of the tie at 100)
    assert render_row(data, row) == (
        "user id is 1. gender is female. age is under 18. occupation is K-12 student. zip code is 48067. "
        "movie id is 10. title is Misérables, Les (1995). genres is Drama, Musical.")
    assert data.vocab["occupation"][1:] == ["K-12 student", "college/grad student", "self-employed"]  # ties by value
    assert "Cité des enfants perdus, La (1995)" in data.vocab["title"]  # latin-1 decoded
    assert "Star Wars: Episode IV - A New Hope (1977)" in data.vocab["title"]  # a ":" inside a "::" file


def test_history_holds_only_earlier_liked_movies(tmp_path: Path) -> None:
    data = MovieLens1M(source=str(write_ml1m(tmp_path / "raw")), history_length=3).load(tmp_path / "cache")
    history = data.sequences["history"]
    assert history.shape == (20, 3)
    expected = brute_force_history(data.user, data.ts, data.y, data.item, 3)
    np.testing.assert_array_equal(history, expected)
    # user 1 at t=210 (movie 70): liked 40 (t=140) and 30 (t=130), 10 (t=100); 60 (t=190) is the most recent
    row = int(np.flatnonzero(data.ts == 210)[0])
    assert [data.vocab["item_id"][i] for i in history[row]] == ["60", "40", "30"]
    for r in range(data.num_samples):  # no future: every history item is an earlier positive of the same user
        for i in history[r][history[r] > 0]:
            earlier = (data.user == data.user[r]) & (data.item == i) & (data.ts < data.ts[r]) & (data.y == 1)
            assert earlier.any()


def test_missing_files_name_the_directory_and_the_manual_steps(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        MovieLens1M(source=str(tmp_path / "empty")).load(tmp_path / "cache")
    assert str(err.value).startswith(f"movielens-1m: raw files not found: put ratings.dat and users.dat and "
                                     f"movies.dat in {tmp_path / 'empty'} (or pass --source DIR")
    assert "\n" not in str(err.value)


def test_the_zip_in_a_source_directory_is_unpacked_into_the_cache(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_ml1m_zip(src)
    (src / "unzipped" / "ratings.dat").unlink()  # only the zip is complete
    a = MovieLens1M(source=str(src)).load(tmp_path / "cache")
    assert (tmp_path / "cache" / "raw" / "movielens-1m" / "ratings.dat").is_file()
    b = MovieLens1M(source=str(write_ml1m(tmp_path / "plain"))).load(tmp_path / "cache2")
    assert a.fingerprint == b.fingerprint  # same raw bytes, same key, however they arrived
    np.testing.assert_array_equal(a.X, b.X)


@pytest.fixture()
def served_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    www = tmp_path / "www"
    archive = write_ml1m_zip(www)
    server = LocalServer(www, ranges=True)
    monkeypatch.setattr(movielens1m, "URL", server.url("ml-1m.zip"))
    monkeypatch.setattr(movielens1m, "CHECKSUM", f"sha256:{hashlib.sha256(archive.read_bytes()).hexdigest()}")
    yield server
    server.stop()


def test_download_unpacks_and_later_loads_need_no_server(served_zip: LocalServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    data = MovieLens1M().load(cache)  # "auto": nothing in <cache>/raw yet, so it downloads
    assert data.num_samples == 20
    assert served_zip.requests == ["/ml-1m.zip"]
    assert sorted(p.name for p in (cache / "raw" / "movielens-1m").iterdir()) == [
        "movies.dat", "ratings.dat", "users.dat"]
    served_zip.stop()
    again = MovieLens1M().load(cache)
    assert again.fingerprint == data.fingerprint


def test_a_corrupt_download_is_a_data_error_and_caches_nothing(served_zip: LocalServer, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(movielens1m, "CHECKSUM", "sha256:" + "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"checksum mismatch for http://127.0.0.1:\d+/ml-1m.zip \(file ml-1m.zip\): "
                                        r"expected sha256:0{64}, got sha256:[0-9a-f]{64}; the download was deleted"):
        MovieLens1M(source="download").load(cache)
    assert list((cache / "downloads").iterdir()) == []
    assert not (cache / "raw").exists() and not (cache / "preprocessed").exists()


def test_a_failed_download_says_where_local_files_go(served_zip: LocalServer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(movielens1m, "URL", served_zip.url("missing.zip"))
    with pytest.raises(DataError) as err:
        MovieLens1M().load(tmp_path / "cache")
    assert str(err.value) == (f"movielens-1m: download of {served_zip.url('missing.zip')} failed: HTTP 404 Not Found; "
                              "to use files you already have, put ratings.dat and users.dat and movies.dat in "
                              f"{tmp_path / 'cache' / 'raw' / 'movielens-1m'} or pass --source DIR")
