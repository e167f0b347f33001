"""Folders that appear whole or not at all: the one write pattern behind the store, the model cache and stages."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(dest: Path, prefix: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of ``dest`` to fill; on success it replaces ``dest`` with one rename, on any
    error (or Ctrl-C) it is removed, so a reader never sees a half-written folder under ``dest``'s name."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{prefix or dest.name}."))
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
