"""The one canonical JSON form behind every content hash: run ids, stage keys and data fingerprints.

Run ids (`ctrbench.spec.RunSpec.run_id`) key stored results and data fingerprints (`ctrbench.data.cache.key_hash`)
key the preprocessed-data cache and the stage caches built on it, so the bytes this module writes must never
change: ``tests/test_run_ids.py`` pins both against the rule written out independently.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any, *, strict: bool = False) -> str:
    """Sorted keys, no whitespace, ASCII only (``\\uXXXX`` escapes): equal content ⇒ equal bytes ⇒ equal hash.
    Tuples are written as lists, non-string keys of plain types as strings (``{1: 2}`` → ``{"1":2}``).

    One rule, two policies for what plain JSON cannot hold, and both write the same bytes for everything that
    is plain JSON (so the run ids and the data fingerprints hashed before the two were merged are unchanged):

    - ``strict=False`` (run ids, stage keys, the runner's memo keys): a value JSON has no type for is written
      as its ``str()`` (a ``Path``, a numpy integer) and NaN/±inf as ``NaN``/``Infinity``, so any config hashes;
    - ``strict=True`` (data fingerprints): such a value raises ``TypeError``/``ValueError`` instead. A
      fingerprint keys arrays on disk for every later process, and ``str()`` of an arbitrary object is not
      guaranteed to be stable across processes or versions (an object's default ``repr`` holds its address),
      so a dataset config must be plain data.
    """
    if strict:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def content_hash(obj: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the sha256 of ``canonical_json(obj)`` (lenient): run ids, stage keys."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


__all__ = ["canonical_json", "content_hash"]
