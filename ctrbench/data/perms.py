"""Permissions of what the data cache creates: the process's umask, as ``open``/``mkdir`` would apply it.

``tempfile.mkdtemp``/``mkstemp``/``NamedTemporaryFile`` create 0700 folders and 0600 files whatever the
umask, and a folder or file renamed into place keeps them: a cache shared by a group on a cluster would be
unreadable to the others. Everything the cache writes through a temporary name is therefore given
``0777 & ~umask`` (folders) or ``0666 & ~umask`` (files) before it is renamed: 0755/0644 by default, 0775/0664
with a group umask of 002.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the OS tells it (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def dir_mode() -> int:
    """``0777 & ~umask``: what ``mkdir`` gives a new folder."""
    return 0o777 & ~current_umask()


def file_mode() -> int:
    """``0666 & ~umask``: what ``open(path, "w")`` gives a new file."""
    return 0o666 & ~current_umask()


def honour_umask(path: str | Path, directory: bool | None = None) -> None:
    """Give ``path`` (made by ``tempfile``) the permissions the umask would have given it."""
    path = Path(path)
    if directory is None:
        directory = path.is_dir()
    os.chmod(path, dir_mode() if directory else file_mode())
