"""What the datasets built from raw files share: finding the files, the cache key, the cached load.

A dataset's ``source`` config key says where its raw files are:

- ``"auto"`` (default): ``<cache>/raw/<name>/`` if the files are there (put them there by hand, or a previous
  download did), else the official download where the dataset has one, else a DataError that says how to
  get the files and where to put them;
- ``"download"``: the official download, even if a copy is in ``<cache>/raw/<name>/``;
- a directory: the files in it (or in one level of subdirectories, as archives unpack them: ``ml-1m/``), or
  the dataset's archive (``ml-1m.zip``) in it.

Archives (downloaded or found) are unpacked into ``<cache>/raw/<name>/``, member by member through temporary
files, so the same files back the cache key however they arrived: the key holds the sha256 of each raw file
the preprocessing reads (remembered by path, size and mtime, see ``cached_sha256``), the preprocessing
version and the whole config. A changed file, option or preprocessing code never reuses stale arrays.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path
from typing import Any

from ctrbench.atomic import atomic_file
from ctrbench.data.cache import cache_root, cached_dataset, key_hash
from ctrbench.data.sources import DataSource, cached_sha256
from ctrbench.data.types import CTRData, TextSpec
from ctrbench.errors import DataError

log = logging.getLogger(__name__)

AUTO, DOWNLOAD = "auto", "download"


class RawDataset:
    """Base of the file-based datasets; subclasses set the names and implement ``config`` and ``build``.

    ``name``: the dataset's name (cache directory, ``CTRData.name``). ``version``: the preprocessing
    version, bumped when ``build`` changes. ``files``: the raw file names ``build`` reads. ``archive``: the
    name of the official archive holding them, if any. ``manual``: how to get the files by hand (one
    sentence, shown when they are missing). ``text``: the dataset's text templates and field labels
    (``CTRData.text``), set on every load, so editing them needs no version bump.
    """

    name: str = ""
    version: int = 1
    files: tuple[str, ...] = ()
    archive: str = ""
    manual: str = ""
    text: TextSpec = TextSpec()  # the dataset's text templates and labels, attached on load (not cached)

    def __init__(self, source: str = AUTO) -> None:
        self.source = str(source)

    # -- to implement ------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Every option that changes the preprocessed arrays (not ``source``: the raw checksums cover it)."""
        raise NotImplementedError

    def build(self, files: dict[str, Path], workdir: Path) -> CTRData:
        """Preprocess the raw ``files`` (name → path); large arrays may be written into ``workdir``."""
        raise NotImplementedError

    def download(self) -> DataSource | None:
        """The official download (an archive named ``archive``, or the single raw file), if there is one."""
        return None

    def check(self) -> None:
        """Raise a DataError for a config that cannot be prepared (called before the files are looked for)."""

    # -- finding the raw files -----------------------------------------------------------------------
    def raw_dir(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / "raw" / self.name

    def _missing(self, where: Path) -> DataError:
        needed = " and ".join(self.files)
        return DataError(f"{self.name}: raw files not found: put {needed} in {where} (or pass --source DIR / "
                         f"set source: DIR); {self.manual}")

    def raw_files(self, cache_dir: Path) -> dict[str, Path]:
        """Name → local path of each file in ``files``, from the configured ``source``."""
        self.check()
        cache_dir = Path(cache_dir)
        default = self.raw_dir(cache_dir)
        if self.source not in (AUTO, DOWNLOAD):
            where = Path(self.source).expanduser()
            if not where.is_dir():
                raise DataError(f"{self.name}: source {self.source!r} is neither 'auto', 'download' nor an "
                                "existing directory")
            found = self._find(where, default)
            if found is None:
                raise self._missing(where)
            return found
        if self.source == AUTO:
            found = self._find(default, default)
            if found is not None:
                return found
        source = self.download()
        if source is None:
            raise self._missing(default)
        try:
            path = source.fetch(cache_dir)
        except DataError as exc:
            raise DataError(f"{self.name}: {exc}; to use files you already have, put {' and '.join(self.files)} "
                            f"in {default} or pass --source DIR") from None
        if self.archive and path.name == self.archive:
            self._unpack(path, default)
            found = self._find(default, default)
        else:
            found = self._find(path.parent, default)
        if found is None:
            raise DataError(f"{self.name}: {path} does not hold {' and '.join(self.files)}")
        return found

    def _find(self, where: Path, unpack_to: Path) -> dict[str, Path] | None:
        """The files in ``where`` or one level below it, else unpacked from ``archive`` in ``where``."""
        if not where.is_dir():
            return None
        candidates = [where, *sorted(p for p in where.iterdir() if p.is_dir())]
        for d in candidates:
            if all((d / f).is_file() for f in self.files):
                return {f: d / f for f in self.files}
        if self.archive and (where / self.archive).is_file():
            self._unpack(where / self.archive, unpack_to)
            if all((unpack_to / f).is_file() for f in self.files):
                return {f: unpack_to / f for f in self.files}
        return None

    def _unpack(self, archive: Path, dest: Path) -> None:
        """Extract the members named like ``files`` (at any depth) into ``dest``, each atomically."""
        try:
            with zipfile.ZipFile(archive) as z:
                members = {Path(m).name: m for m in z.namelist() if Path(m).name in self.files}
                missing = [f for f in self.files if f not in members]
                if missing:
                    raise DataError(f"{self.name}: archive {archive} has no {', '.join(missing)}")
                for name, member in members.items():
                    with atomic_file(dest / name) as out, z.open(member) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        except zipfile.BadZipFile:
            raise DataError(f"{self.name}: {archive} is not a valid zip archive") from None
        log.info("%s: unpacked %s into %s", self.name, archive.name, dest)

    # -- cache ---------------------------------------------------------------------------------------
    def _key(self, files: dict[str, Path], cache_dir: Path) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "config": self.config(),
                "raw": {name: cached_sha256(path, cache_dir) for name, path in sorted(files.items())}}

    def fingerprint(self, cache_dir: Path | None = None) -> str:
        """The hash ``load`` gives ``data.fingerprint``: raw files' checksums + config + preprocessing version."""
        cache_dir = Path(cache_dir) if cache_dir is not None else cache_root()
        return key_hash(self._key(self.raw_files(cache_dir), cache_dir))

    def load(self, cache_dir: Path) -> CTRData:
        cache_dir = Path(cache_dir)
        files = self.raw_files(cache_dir)
        data = cached_dataset(cache_dir, self._key(files, cache_dir), lambda workdir: self.build(files, workdir))
        data.text = self.text
        return data
