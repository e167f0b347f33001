"""Sparse embedding gradients with a lazy (row-wise) Adam: ``train.sparse_embeddings``.

Why: with a dense gradient every step touches every row of every embedding table — the ``index_add_`` into a
zeroed table-sized gradient, AdamW's moments and its update — although a batch of 256 rows looks up at most
256 values per field. On MovieLens-100K's 5k-row tables that is a small cost; on Criteo's or Avazu's
million-row tables it is most of the step. With the option on, the CTR backbones' ``FieldEmbedding`` tables
produce sparse (COO) gradients holding only the looked-up rows, and `torch.optim.SparseAdam` updates only
those rows and their moments ("lazy Adam", as TensorFlow's ``LazyAdam`` and FuxiCTR's sparse embeddings do);
every other parameter stays with the phase's AdamW.

What differs from dense AdamW, and why the option is off by default: a row's moments are not decayed and the
row does not move in a step where the batch does not look it up (dense Adam keeps moving it on its momentum),
and the tables get no weight decay (a decay of every row is a dense update; `TrainConfig` refuses
``weight_decay`` and ``embedding_regularizer`` with the option, use ``net_regularizer`` for the other weights).
So runs with and without it are different numbers; benchmarks/README.md compares their AUC and speed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ctrbench.errors import RunError
from ctrbench.models.base import FieldEmbedding


class SparseTables:
    """The sparse-gradient tables of a phase and their `torch.optim.SparseAdam` (betas and eps as AdamW's)."""

    def __init__(self, params: Sequence[nn.Parameter], lr: float) -> None:
        self.params = list(params)
        self.optimizer = torch.optim.SparseAdam(self.params, lr=lr)
        self.checked = False

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def check(self, run_name: str) -> None:
        """After the first backward: every table got a sparse gradient. A model that also reads a table outside
        a lookup (a product with the whole table, a penalty on it) makes the gradient dense; say which."""
        if self.checked:
            return
        self.checked = True
        for i, p in enumerate(self.params):
            if p.grad is not None and not p.grad.is_sparse:
                raise RunError(f"run {run_name}: train.sparse_embeddings: embedding table {i} ({tuple(p.shape)}) got a "
                               "dense gradient: the model reads the whole table, not only looked-up rows; "
                               "run it without train.sparse_embeddings")

    def coalesced_values(self) -> list[torch.Tensor]:
        """Each table's gradient rows, duplicates summed (a row looked up twice in a batch appears once), as
        views that scale the gradient in place."""
        values = []
        for p in self.params:
            if p.grad is None:
                continue
            p.grad = p.grad.coalesce()
            values.append(p.grad._values())
        return values


def sparse_tables(model: nn.Module) -> list[FieldEmbedding]:
    """The model's trainable ``FieldEmbedding`` tables (the CTR backbones' feature embeddings)."""
    return [m for m in model.modules() if isinstance(m, FieldEmbedding) and m.weight.requires_grad]


def without(params: Any, removed: Sequence[nn.Parameter]) -> Any:
    """``params`` (parameters or AdamW groups) without ``removed``."""
    ids = {id(p) for p in removed}
    items = list(params)
    if items and isinstance(items[0], dict):
        return [{**g, "params": [p for p in g["params"] if id(p) not in ids]} for g in items]
    return [p for p in items if id(p) not in ids]


@contextmanager
def sparse_gradients(tables: Sequence[FieldEmbedding]) -> Iterator[list[nn.Parameter]]:
    """Make ``tables`` produce sparse gradients while the block runs (the model may train densely later, in
    another phase or an alternation round); yields their weights."""
    previous = [t.sparse for t in tables]
    for t in tables:
        t.sparse = True
    try:
        yield [t.weight for t in tables]
    finally:
        for t, was in zip(tables, previous, strict=True):
            t.sparse = was
