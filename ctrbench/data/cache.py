"""The on-disk cache of preprocessed datasets.

A preprocessed dataset lives in ``<cache_dir>/preprocessed/<name>-<hash16>/`` where the hash covers
everything the arrays depend on: the raw files' checksums, the whole preprocessing config and a
preprocessing version that a dataset bumps when its code changes. So a changed config or changed code
gets a new directory instead of silently reusing stale arrays (the FuxiCTR complaint). A directory is
written under a temporary name and renamed into place, so a half-written cache is never read.

Integrity: ``meta.json`` records each array file's size and CRC-32, computed when the directory is written and
checked when it is loaded (once per process for each file: the result is remembered by inode, size and
modification time, so a suite's hundred runs read a 10 GB array once, not a hundred times). A directory whose
files do not match, that lacks ``meta.json`` (left by a crash or by hand), or whose ``meta.json`` has no
checksums (an older ctrbench) is moved aside and rebuilt, with a warning naming the file. Folders and files
get the process's umask (0755/0644 by default), so a cache can be shared by a group.

Layout: one ``.npy`` per array (``X``, ``y``, ``ts``, ``user``, ``item``, ``split_<s>``, ``seq_<name>``)
plus ``meta.json`` (fields, vocab, names, the key). ``.npy`` rather than ``.npz`` because ``.npy`` files
can be memory-mapped, which is what lets a 10M-row set be used without loading it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ctrbench.atomic import make_temp_dir, publish_directory, remove_tree
from ctrbench.data.types import SPLITS, CTRData, Field
from ctrbench.errors import DataError
from ctrbench.hashing import canonical_json

log = logging.getLogger(__name__)

CACHE_ENV = "CTRBENCH_CACHE"
# Bump when the on-disk layout below changes; part of every key, so old directories are simply not found.
CACHE_FORMAT = 1
REQUIRED_KEYS = ("name", "version", "config")

Build = Callable[[], CTRData] | Callable[[Path], CTRData]

_DTYPES = {"X": np.int64, "y": np.float32, "ts": np.int64, "user": np.int64, "item": np.int64}


def cache_root() -> Path:
    """``$CTRBENCH_CACHE`` if set, else ``~/.cache/ctrbench`` (outside the repository: data is never committed)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ctrbench"


def key_hash(key: dict[str, Any]) -> str:
    """sha256 of the canonical key (`ctrbench.hashing.canonical_json`, strict: plain JSON data only) plus the
    cache format version; this is ``CTRData.fingerprint``."""
    missing = [k for k in REQUIRED_KEYS if k not in key]
    if missing:
        raise DataError(f"dataset cache key lacks {missing}: it must name the dataset, its preprocessing "
                        "version and its full config (plus the raw files' checksums where it has raw files)")
    try:
        text = canonical_json({"cache_format": CACHE_FORMAT, **key}, strict=True)
    except (TypeError, ValueError) as exc:
        raise DataError(f"dataset cache key is not plain JSON data: {exc}") from None
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def array_path(workdir: Path, name: str) -> Path:
    """Where array ``name`` is stored in a cache directory (builders writing memmaps use this)."""
    return Path(workdir) / f"{name}.npy"


def open_array(workdir: Path, name: str, shape: tuple[int, ...], dtype: Any) -> np.memmap:
    """A writable ``.npy`` memmap in the cache directory being built, filled in chunks by out-of-core builders."""
    return np.lib.format.open_memmap(array_path(workdir, name), mode="w+", dtype=dtype, shape=shape)


def _dir_name(name: str, digest: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "dataset"
    return f"{safe}-{digest[:16]}"


def cached_dataset(cache_dir: Path, key: dict[str, Any], build: Build) -> CTRData:
    """Load the dataset for ``key`` from the cache, building and storing it first if absent.

    ``key`` must hold ``name``, ``version`` (the preprocessing code version) and ``config`` (every
    preprocessing option), and should hold ``raw`` (the raw files' checksums). ``build`` is called only
    on a miss; it may take one argument, the directory being written, to create memory-mapped arrays
    there with ``open_array`` instead of holding them in memory. The returned data is always read back
    from the cache, so a first load and a cached load behave the same; ``fingerprint`` is the key hash.
    """
    digest = key_hash(key)
    root = Path(cache_dir) / "preprocessed"
    final = root / _dir_name(str(key["name"]), digest)
    for _ in range(2):  # a second look only when another process replaced the directory meanwhile
        try:
            inode = os.lstat(final).st_ino
        except FileNotFoundError:
            break
        try:
            data = _load(final, digest)
            log.debug("dataset cache hit: %s", final)
            return data
        except Exception as exc:  # an unreadable, incomplete or altered cache is rebuilt, never trusted
            try:
                if os.lstat(final).st_ino != inode:
                    continue  # another process put a fresh copy there: use it rather than delete it
            except FileNotFoundError:
                break  # another process discarded it already
            log.warning("preprocessed dataset %s cannot be used (%s); rebuilding it", final, _reason(exc))
            remove_tree(final)  # renamed aside first: no process loads a half-deleted directory
            break
    work = make_temp_dir(root, f".tmp-{final.name}-")
    try:
        data = build(work) if _takes_workdir(build) else build()  # type: ignore[call-arg]
        _save(work, data, key, digest)
        del data  # drop memmaps into ``work`` before it is renamed
        if not publish_directory(work, final, complete=lambda d: (d / "meta.json").is_file()):
            log.info("another process stored %s first; using its copy", final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("stored preprocessed dataset in %s", final)
    return _load(final, digest)


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"


# -- checksums of the array files -------------------------------------------------------------------------

_CHUNK = 4 << 20
_VERIFIED: dict[tuple[int, ...], str] = {}  # (dev, inode, size, mtime_ns, ctime_ns) -> crc32 hex
_VERIFIED_LOCK = threading.Lock()


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_crc32(path: Path) -> str:
    """CRC-32 of a file's bytes as 8 hex digits, read in 4 MiB chunks; remembered for this process by the
    file's inode, size and modification/change times, so an unchanged file is read once per process."""
    with open(path, "rb") as f:
        key = _stat_key(os.fstat(f.fileno()))
        with _VERIFIED_LOCK:
            known = _VERIFIED.get(key)
        if known is not None:
            return known
        crc = 0
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    value = f"{crc & 0xFFFFFFFF:08x}"
    with _VERIFIED_LOCK:
        _VERIFIED[key] = value
    return value


def _checksum(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "crc32": file_crc32(path)}


def _verify(path: Path, expected: Any) -> None:
    """Raise a DataError naming ``path`` unless its size and CRC-32 are those recorded in meta.json."""
    if not isinstance(expected, dict) or "size" not in expected or "crc32" not in expected:
        raise DataError(f"{path.parent / 'meta.json'} records no checksum for {path.name}")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    if size != expected["size"]:
        raise DataError(f"{path} has {size} bytes, meta.json records {expected['size']}")
    crc = file_crc32(path)
    if crc != expected["crc32"]:
        raise DataError(f"{path} does not match its checksum (crc32 {crc}, meta.json records {expected['crc32']}); "
                        "the file was altered after it was written")


def _takes_workdir(build: Build) -> bool:
    try:
        params = [p for p in inspect.signature(build).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):
        return False
    return len(params) == 1


def _arrays(data: CTRData) -> dict[str, np.ndarray]:
    arrays = {"X": data.X, "y": data.y, "ts": data.ts, "user": data.user, "item": data.item}
    arrays.update({f"split_{s}": data.splits[s] for s in SPLITS})
    arrays.update({f"seq_{n}": a for n, a in data.sequences.items()})
    return arrays


def _save(work: Path, data: CTRData, key: dict[str, Any], digest: str) -> None:
    out_of_core = False
    checksums: dict[str, dict[str, Any]] = {}
    for name, arr in _arrays(data).items():
        path = array_path(work, name)
        if isinstance(arr, np.memmap):
            out_of_core = True
            if arr.filename and Path(arr.filename).resolve() == path.resolve():
                arr.flush()  # written in place by the builder
                checksums[name] = _checksum(path)
                continue
        dtype = _DTYPES.get(name, np.int64)
        np.save(path, np.asarray(arr, dtype=dtype), allow_pickle=False)
        checksums[name] = _checksum(path)
    meta = {
        "cache_format": CACHE_FORMAT,
        "name": data.name,
        "fingerprint": digest,
        "key": key,
        "fields": [_field_json(f) for f in data.fields],
        "sequence_fields": [_field_json(f) for f in data.sequence_fields],
        "sequences": sorted(data.sequences),
        "vocab": data.vocab,
        "item_text": data.item_text,
        "user_field": data.user_field,
        "item_field": data.item_field,
        "description": data.description,
        "mmap": out_of_core,
        "arrays": checksums,
    }
    with open(work / "meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False)


def _field_json(f: Field) -> dict[str, Any]:
    return {"name": f.name, "kind": f.kind, "vocab_size": f.vocab_size, "text_name": f.text_name,
            "shares": f.shares}


def _load(path: Path, digest: str) -> CTRData:
    if not (path / "meta.json").is_file():
        raise DataError(f"{path / 'meta.json'} is missing: the directory is incomplete (left by a crash?)")
    try:
        with open(path / "meta.json", encoding="utf-8") as f:
            meta = json.load(f)
    except ValueError as exc:
        raise DataError(f"{path / 'meta.json'} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("cache_format") != CACHE_FORMAT or meta.get("fingerprint") != digest:
        raise DataError(f"{path / 'meta.json'} does not belong to key {digest[:16]}")
    checksums = meta.get("arrays")
    if not isinstance(checksums, dict):
        raise DataError(f"{path / 'meta.json'} records no array checksums (written by an older ctrbench)")
    mode = "r" if meta["mmap"] else None

    def arr(name: str) -> np.ndarray:
        file = array_path(path, name)
        _verify(file, checksums.get(name))
        return np.load(file, mmap_mode=mode, allow_pickle=False)

    return CTRData(
        name=meta["name"],
        fields=[Field(**f) for f in meta["fields"]],
        X=arr("X"), y=arr("y"), ts=arr("ts"), user=arr("user"), item=arr("item"),
        splits={s: arr(f"split_{s}") for s in SPLITS},
        vocab={k: list(v) for k, v in meta["vocab"].items()},
        sequences={n: arr(f"seq_{n}") for n in meta["sequences"]},
        sequence_fields=[Field(**f) for f in meta["sequence_fields"]],
        user_field=meta["user_field"],
        item_field=meta["item_field"],
        fingerprint=digest,
        description=meta["description"],
        item_text={k: list(v) for k, v in meta.get("item_text", {}).items()},
    )
