"""Files and folders that appear whole or not at all: the write patterns behind the store, the leaderboards, the
model cache and stages.

- `atomic_write_bytes` / `atomic_write_json`: a temp file beside the target, fsynced, then ``os.replace``.
- `atomic_file`: the same for a file written as a stream (``np.save``, a member copied out of a zip, a download
  checked while it is written): the block fills it, leaving the block renames it in, an error discards it.
- `atomic_directory` / `replace_directory`: a folder filled under a temp name, then swapped in with renames
  (the old one is renamed away, the new one renamed in, the old one deleted last), so a reader never sees a
  half-written folder and a failure before the swap leaves the old one as it was.
- `publish_directory`: a finished folder renamed in where the first complete copy wins (caches that several
  processes may fill at once: preprocessed data, stages, model folders); `remove_tree` deletes a folder by
  renaming it aside first, so nobody reads a half-deleted one under its name.
- Everything is created with the process's umask (files 0666 & ~umask, folders 0777 & ~umask: 0644/0755 by
  default), never 0600/0700 as ``tempfile.mkstemp``/``mkdtemp`` would, so a store shared by a group stays
  readable to it.
- `writing(path)` turns the OSErrors of a full disk, a quota, a read-only file system or missing permissions
  into a one-line `WriteError` naming the path and the free space there.
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ctrbench.errors import WriteError

# errno values that mean "this environment does not let us write here", not a bug
_WRITE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "operation not permitted", errno.EFBIG: "file too large"}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def free_space(path: str | Path) -> str:
    """Free space on the file system holding ``path`` (its nearest existing parent), e.g. ``"12.0 MiB"``."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return human_bytes(shutil.disk_usage(p).free)
    except OSError:
        return "unknown"


def write_error(path: str | Path, exc: OSError) -> WriteError | None:
    """The one-line `WriteError` for an OSError of the environment (disk full, read-only…), else None."""
    reason = _WRITE_ERRNOS.get(exc.errno or 0)
    if reason is None:
        return None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        reason = f"{reason} ({free_space(path)} free there)"
    return WriteError(f"{path}: cannot write: {reason}; nothing stored before was changed")


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Map environment OSErrors raised inside the block to a `WriteError` naming ``path``."""
    try:
        yield
    except OSError as exc:
        err = write_error(path, exc)
        if err is None:
            raise
        raise err from None


def temp_name(dest: Path, suffix: str = ".tmp") -> Path:
    """A hidden, unique sibling name for ``dest``."""
    return dest.with_name(f".{dest.name}.{secrets.token_hex(6)}{suffix}")


def discard(path: Path) -> None:
    """Remove a temp file of ours if it is there; never raises (a read-only file system refuses even that)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_all(fd: int, data: bytes, path: Path) -> None:
    """Every byte a file of ctrbench's gets goes through here (tests inject disk faults at this point)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_new_file(path: Path, data: bytes, report: Path | None = None) -> None:
    """Create ``path`` (it must not exist), write ``data``, fsync. Removed again if anything fails. Errors name
    ``report`` (the file a temp file is for) when given."""
    with writing(report or path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            try:
                _write_all(fd, data, path)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            discard(path)
            raise


def make_dirs(path: Path) -> None:
    """``mkdir -p`` with the umask's permissions; environment errors name the path."""
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    make_dirs(path.parent)
    tmp = temp_name(path)
    try:
        write_new_file(tmp, data, report=path)
        with writing(path):
            os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


class _Sink(io.RawIOBase):
    """What `atomic_file` yields: each ``write`` goes whole through `_write_all`; errors name ``report``."""

    def __init__(self, fd: int, tmp: Path, report: Path) -> None:
        super().__init__()
        self._fd, self._tmp, self._report = fd, tmp, report

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        with writing(self._report):
            _write_all(self._fd, view, self._tmp)
        return len(view)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[io.RawIOBase]:
    """A binary file to fill, written under a temp name beside ``path`` (umask permissions): when the block ends
    without an error it is fsynced and renamed over ``path``; on any error (a check that fails inside the block,
    Ctrl-C) it is removed and ``path`` is left as it was. Unbuffered, every ``write`` a system call: write in
    chunks (``np.save``, ``shutil.copyfileobj`` do). Errors of the environment while writing (disk full,
    read-only…) are a `WriteError` naming ``path``; errors of the block pass unchanged."""
    path = Path(path)
    make_dirs(path.parent)
    tmp = temp_name(path)
    with writing(path):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            yield _Sink(fd, tmp, path)
            with writing(path):
                os.fsync(fd)
        finally:
            os.close(fd)
        with writing(path):
            os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new, empty folder ``parent/<prefix><random>`` (umask permissions, unlike ``tempfile.mkdtemp``)."""
    make_dirs(parent)
    while True:
        path = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            with writing(path):
                os.mkdir(path)
            return path
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def replace_directory(src: Path, dest: Path, *, old: Path | None = None,
                      dispose: Callable[[Path], None] = lambda p: shutil.rmtree(p, ignore_errors=True)) -> None:
    """Put the complete folder ``src`` at ``dest``, replacing what is there, never deleting first: the old
    ``dest`` is renamed to ``old`` (default: a hidden sibling), ``src`` renamed in, and only then the old one
    handed to ``dispose``. If renaming ``src`` in fails, the old folder is renamed back."""
    moved: list[Path] = []
    for attempt in range(5):  # another process may put its own copy there between our renames (model cache)
        if os.path.lexists(dest):
            away = old if old is not None and attempt == 0 else temp_name(old or dest, ".old")
            try:
                with writing(dest):
                    os.rename(dest, away)
                moved.append(away)
            except FileNotFoundError:  # gone meanwhile (another process moved it)
                pass
        try:
            os.rename(src, dest)
            break
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                continue  # someone else's copy appeared at dest: move it away too and try again
            if moved and not os.path.lexists(dest):
                try:
                    os.rename(moved.pop(), dest)
                except OSError:
                    pass
            err = write_error(dest, exc)
            if err is None:
                raise
            raise err from None
    else:
        raise OSError(errno.EEXIST, f"{dest}: another process keeps replacing it")
    for path in moved:
        dispose(path)


def remove_tree(path: Path) -> None:
    """Delete ``path`` (a folder, a file or a link) by renaming it to a hidden sibling first, one atomic step, so
    no process finds a half-deleted folder under its name; never raises (gone already is fine)."""
    aside = temp_name(path, ".old")
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # another process removed it already
        return
    except OSError:
        aside = path
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        discard(aside)


def publish_directory(src: Path, dest: Path, complete: Callable[[Path], bool]) -> bool:
    """Rename the finished folder ``src`` to ``dest`` unless a copy for which ``complete(dest)`` holds is there
    already: the first complete copy wins and is never replaced, so a process reading it is not disturbed by
    another that computed the same thing. Something at ``dest`` that is not complete (a crash's leftover, a
    folder made by hand) is removed first (`remove_tree`). Returns True when ``src`` became ``dest``, False
    when another copy was kept (``src`` is then the caller's to delete). Environment errors are a `WriteError`."""
    for _ in range(5):  # another process may publish between our look and our rename
        if os.path.lexists(dest):
            if complete(dest):
                return False
            remove_tree(dest)
        try:
            with writing(dest):
                os.rename(src, dest)
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    if complete(dest):
        return False
    raise OSError(errno.EEXIST, f"{dest}: another process keeps replacing it")


@contextmanager
def atomic_directory(dest: Path, prefix: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of ``dest`` to fill; on success it replaces ``dest`` (`replace_directory`), on
    any error (or Ctrl-C) it is removed, so a reader never sees a half-written folder under ``dest``'s name."""
    dest = Path(dest)
    tmp = make_temp_dir(dest.parent, f".{prefix or dest.name}.")
    try:
        yield tmp
        replace_directory(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["atomic_directory", "atomic_file", "atomic_write_bytes", "atomic_write_json", "discard", "free_space",
           "make_dirs", "make_temp_dir", "publish_directory", "remove_tree", "replace_directory", "temp_name",
           "stage_lock_path", "write_error", "write_new_file", "writing"]


def stage_lock_path(stage_root: Path, key: str) -> Path:
    """The file lock a stage's computation holds while its temp folder ``.<key>.<token>/`` exists (taken by
    `RunContext.stage`, probed by `Store.check` to tell a live computation from a killed one's leftovers)."""
    return stage_root / f".{key}.lock"
