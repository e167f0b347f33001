"""Shared fixtures: tiny in-memory datasets built in the test, never downloaded."""

from __future__ import annotations

import numpy as np
import pytest

from ctrbench.data.types import CTRData, Field


def make_tiny_data(n: int = 3000, seed: int = 0, nan_labels: bool = False) -> CTRData:
    """Three categorical fields with a planted user×item signal and a temporal 8:1:1 split."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n_cats = 40, 30, 5
    user = rng.integers(1, n_users, n)
    item = rng.integers(1, n_items, n)
    cat = rng.integers(1, n_cats, n)
    uf, itf = rng.normal(size=(n_users, 4)), rng.normal(size=(n_items, 4))
    logit = (uf[user] * itf[item]).sum(1) + 0.5 * (cat - 2)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    fields = [Field("user_id", "categorical", n_users, "user id"), Field("item_id", "categorical", n_items, "item id"),
              Field("cat", "categorical", n_cats, "category")]
    a, b = int(n * 0.8), int(n * 0.9)
    return CTRData(
        name="tiny", fields=fields, X=np.stack([user, item, cat], 1).astype(np.int64), y=y,
        ts=np.arange(n, dtype=np.int64), user=user.astype(np.int64), item=item.astype(np.int64),
        splits={"train": np.arange(a), "valid": np.arange(a, b), "test": np.arange(b, n)},
        vocab={"user_id": ["unknown"] + [f"u{i}" for i in range(1, n_users)],
               "item_id": ["unknown"] + [f"i{i}" for i in range(1, n_items)],
               "cat": ["unknown"] + [f"c{i}" for i in range(1, n_cats)]},
        fingerprint=f"tiny-{n}-{seed}",
    )


@pytest.fixture
def tiny_data() -> CTRData:
    return make_tiny_data()


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never read or write the user's ~/.cache/ctrbench."""
    import os

    old = os.environ.get("CTRBENCH_CACHE")
    os.environ["CTRBENCH_CACHE"] = str(tmp_path_factory.mktemp("ctrbench-cache"))
    yield
    if old is None:
        os.environ.pop("CTRBENCH_CACHE", None)
    else:
        os.environ["CTRBENCH_CACHE"] = old
