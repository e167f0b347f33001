"""The on-disk cache of preprocessed datasets.

A preprocessed dataset lives in ``<cache_dir>/preprocessed/<name>-<hash16>/`` where the hash covers
everything the arrays depend on: the raw files' checksums, the whole preprocessing config and a
preprocessing version that a dataset bumps when its code changes. So a changed config or changed code
gets a new directory instead of silently reusing stale arrays (the FuxiCTR complaint). A directory is
written under a temporary name and renamed into place, so a half-written cache is never read.

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
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ctrbench.data.types import SPLITS, CTRData, Field
from ctrbench.errors import DataError

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


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON: the same key always gives the same bytes (tuples become lists)."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"dataset cache key is not plain JSON data: {exc}") from None


def key_hash(key: dict[str, Any]) -> str:
    """sha256 of the canonical key plus the cache format version; this is ``CTRData.fingerprint``."""
    missing = [k for k in REQUIRED_KEYS if k not in key]
    if missing:
        raise DataError(f"dataset cache key lacks {missing}: it must name the dataset, its preprocessing "
                        "version and its full config (plus the raw files' checksums where it has raw files)")
    return hashlib.sha256(canonical_json({"cache_format": CACHE_FORMAT, **key}).encode("ascii")).hexdigest()


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
    if (final / "meta.json").is_file():
        try:
            data = _load(final, digest)
            log.debug("dataset cache hit: %s", final)
            return data
        except Exception as exc:  # an unreadable cache is rebuilt, never trusted
            log.warning("dataset cache %s is unreadable (%s: %s); rebuilding it", final, type(exc).__name__, exc)
            shutil.rmtree(final, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{final.name}-"))
    try:
        data = build(work) if _takes_workdir(build) else build()  # type: ignore[call-arg]
        _save(work, data, key, digest)
        del data  # drop memmaps into ``work`` before it is renamed
        try:
            os.rename(work, final)
        except OSError:
            if not (final / "meta.json").is_file():
                raise
            log.info("another process stored %s first; using its copy", final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("stored preprocessed dataset in %s", final)
    return _load(final, digest)


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
    for name, arr in _arrays(data).items():
        path = array_path(work, name)
        if isinstance(arr, np.memmap):
            out_of_core = True
            if arr.filename and Path(arr.filename).resolve() == path.resolve():
                arr.flush()  # written in place by the builder
                continue
        dtype = _DTYPES.get(name, np.int64)
        np.save(path, np.asarray(arr, dtype=dtype), allow_pickle=False)
    meta = {
        "cache_format": CACHE_FORMAT,
        "name": data.name,
        "fingerprint": digest,
        "key": key,
        "fields": [_field_json(f) for f in data.fields],
        "sequence_fields": [_field_json(f) for f in data.sequence_fields],
        "sequences": sorted(data.sequences),
        "vocab": data.vocab,
        "user_field": data.user_field,
        "item_field": data.item_field,
        "description": data.description,
        "mmap": out_of_core,
    }
    with open(work / "meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False)


def _field_json(f: Field) -> dict[str, Any]:
    return {"name": f.name, "kind": f.kind, "vocab_size": f.vocab_size, "text_name": f.text_name,
            "shares": f.shares}


def _load(path: Path, digest: str) -> CTRData:
    with open(path / "meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("cache_format") != CACHE_FORMAT or meta.get("fingerprint") != digest:
        raise DataError(f"{path}/meta.json does not belong to key {digest[:16]}")
    mode = "r" if meta["mmap"] else None

    def arr(name: str) -> np.ndarray:
        return np.load(array_path(path, name), mmap_mode=mode, allow_pickle=False)

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
    )
