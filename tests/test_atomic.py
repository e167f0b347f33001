"""ctrbench.atomic's stream and folder helpers: atomic_file, publish_directory, remove_tree (the store's own
write paths are tested in test_store.py)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import ctrbench.atomic as atomic
from ctrbench.errors import DataError, WriteError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_atomic_file_writes_a_stream_with_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        with atomic.atomic_file(tmp_path / "new" / "a.npy") as f:
            np.save(f, np.arange(10), allow_pickle=False)
    finally:
        os.umask(old)
    assert np.load(tmp_path / "new" / "a.npy").tolist() == list(range(10))
    assert _mode(tmp_path / "new" / "a.npy") == 0o666 & ~mask
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["a.npy"]


def test_atomic_file_discards_its_temp_on_an_error_of_the_block(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"old")
    with pytest.raises(DataError, match="bad"), atomic.atomic_file(tmp_path / "a") as f:
        f.write(b"half")
        raise DataError("bad")
    assert (tmp_path / "a").read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a"]


def test_atomic_file_on_a_full_disk_is_a_write_error_and_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a").write_bytes(b"old")

    def full(fd, data, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", full)
    with pytest.raises(WriteError, match=r"a: cannot write: no space left on device \(.* free there\)"):
        with atomic.atomic_file(tmp_path / "a") as f:
            f.write(b"new")
    assert (tmp_path / "a").read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a"]


def _folder(path: Path, marker: bool, text: str) -> Path:
    path.mkdir()
    (path / "x").write_text(text)
    if marker:
        (path / "done").write_text("")
    return path


def _done(p: Path) -> bool:
    return (p / "done").exists()


def test_publish_directory_renames_in_and_the_first_complete_copy_wins(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert atomic.publish_directory(_folder(tmp_path / "a", True, "a"), dest, _done)
    assert not atomic.publish_directory(_folder(tmp_path / "b", True, "b"), dest, _done)
    assert (dest / "x").read_text() == "a" and (tmp_path / "b").is_dir()  # b is the caller's to delete


def test_publish_directory_replaces_an_incomplete_copy(tmp_path: Path) -> None:
    dest = _folder(tmp_path / "dest", False, "half")
    assert atomic.publish_directory(_folder(tmp_path / "a", True, "a"), dest, _done)
    assert (dest / "x").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]  # the incomplete one is gone, nothing aside


def test_remove_tree_removes_folders_files_and_missing_paths(tmp_path: Path) -> None:
    atomic.remove_tree(_folder(tmp_path / "d", True, "x"))
    (tmp_path / "f").write_text("f")
    atomic.remove_tree(tmp_path / "f")
    atomic.remove_tree(tmp_path / "missing")
    assert list(tmp_path.iterdir()) == []
