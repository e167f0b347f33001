"""Run ids and data fingerprints never change: stored results are keyed by the run id, the preprocessed-data
cache and the stage caches by the fingerprint. Each is pinned twice: against the rule as it was before
``ctrbench.hashing`` merged the two ``canonical_json`` functions, written out here independently, and against
literal values computed by that old code."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ctrbench.data.cache import CACHE_FORMAT, key_hash
from ctrbench.errors import DataError
from ctrbench.hashing import canonical_json, content_hash
from ctrbench.spec import ComponentRef, RunSpec


def _ref(r: ComponentRef | None) -> dict | None:
    return None if r is None else {"name": r.name, "config": r.config}


def old_run_id(spec: RunSpec) -> str:
    """The run-id rule of ctrbench.spec before the merge, written out by hand."""
    identity = {"dataset": _ref(spec.dataset), "method": _ref(spec.method), "ctr": _ref(spec.ctr),
                "plm": _ref(spec.plm), "train": spec.train, "seed": spec.seed}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def old_fingerprint(key: dict) -> str:
    """The fingerprint rule of ctrbench.data.cache before the merge, written out by hand."""
    text = json.dumps({"cache_format": CACHE_FORMAT, **key}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


SPECS = {
    "4275acd08bacef06": RunSpec(
        "s", ComponentRef("synthetic", {"num_samples": 500, "alpha": 0.5}), ComponentRef("ctr"),
        ComponentRef("dcnv2", {"layers": 3, "dropout": 0.1}), None, {"epochs": 2, "lr": 1e-3}, 0),
    # non-ASCII text, a NaN, a Path (written as its str()), labels and suite (not part of the id)
    "f7a1725e70353ce8": RunSpec(
        "t", ComponentRef("movielens-1m"), ComponentRef("clickprompt", {"prompt": "ü→"}), ComponentRef("dnn"),
        ComponentRef("bert-tiny", {"max_length": 64}), {"epochs": 1, "nan": float("nan"), "p": Path("/x")}, 3,
        {"a": "b"}),
}


@pytest.mark.parametrize("pinned", SPECS)
def test_run_ids_are_those_of_the_old_rule(pinned: str) -> None:
    spec = SPECS[pinned]
    assert spec.run_id == old_run_id(spec) == pinned


def test_labels_and_suite_do_not_change_a_run_id() -> None:
    spec = SPECS["4275acd08bacef06"]
    other = RunSpec("another-suite", spec.dataset, spec.method, spec.ctr, spec.plm, spec.train, spec.seed,
                    {"ctr": "dcnv2"})
    assert other.run_id == spec.run_id


def test_content_hash_of_non_json_values_is_unchanged() -> None:
    """Stage keys: numpy integers and inf are hashed as the old rule did (str() and Infinity)."""
    assert content_hash({"a": 1, "b": np.int64(3), "c": float("inf")}) == "5382ce014cafaf65"
    assert content_hash([1, "x", {"z": 1, "a": 2}]) == "ce994b9c3913e335"


KEYS = {
    "aac13a473f13ba184ff1bcff85df8048b9a64d1f908226c85787c9e706a2808c":
        {"name": "x", "version": 1, "config": {"a": 1, "b": 2.5, "c": [1, 2, (3, 4)], "d": None, "e": True}},
    "6356b3da679280b4b05c5406731584809de74be5d7813a87c08a4eb0c94b6574":
        {"name": "ünï", "version": 3, "config": {"ints": {1: "a", 2: "b"}, "text": "é€😀", "f": 1e-7, "g": 1e20,
                                                "h": -0.0}},
    "255eb2165cf1541072cb0d020fe98fe4abfaa1e0a120146f2c3d94ba0036750e":
        {"name": "m", "version": 2, "config": {"split": (0.8, 0.1, 0.1), "np": np.float64(0.25)},
         "raw": {"a.txt": "sha256:" + "0" * 64}},
}


@pytest.mark.parametrize("pinned", KEYS)
def test_data_fingerprints_are_those_of_the_old_rule(pinned: str) -> None:
    assert key_hash(KEYS[pinned]) == old_fingerprint(KEYS[pinned]) == pinned


@pytest.mark.parametrize("value", [float("nan"), math.inf, Path("/x"), np.int64(3), object()])
def test_a_fingerprint_needs_plain_json_data(value: object) -> None:
    with pytest.raises(DataError, match="dataset cache key is not plain JSON data"):
        key_hash({"name": "x", "version": 1, "config": {"v": value}})


@pytest.mark.parametrize("obj", [{"b": [1, 2.5, None], "a": {"é": "€"}}, [(1, 2), {"3": True}], "x", 1e-300])
def test_both_policies_write_the_same_bytes_for_plain_json(obj: object) -> None:
    assert canonical_json(obj) == canonical_json(obj, strict=True)
    assert canonical_json(obj).isascii() and " " not in canonical_json(obj)
