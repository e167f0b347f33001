"""Factorization Machines (Rendle, ICDM 2010), Eq. 1 computed in O(F·d) by Lemma 3.1.

    logit = w_0 + Σ_f w_f[x_f] + Σ_{i<j} <e_i, e_j>                                  (Eq. 1)

The parts map onto the backbone interface as: ``linear_logit`` = Σ_f w_f[x_f] (a dim-1
``FieldEmbedding``); ``q = fm_pairwise(E)`` = Σ_{i<j} e_i ⊙ e_j ``[B, d]``; ``head(q)`` = w_0 + Σ_k q_k.
The head has no learnable projection, so the model is parameter-exact to the paper's FM. Extra fields
(``extra``, [B, k, d]) enter the pairwise term only: they have no first-order weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.data.types import Field
from ctrbench.models.base import Batch, CTRBackbone, FieldEmbedding, backbone
from ctrbench.models.layers import fm_pairwise


@backbone(
    "fm",
    summary='Factorization machine: first-order weights + all pairwise inner products',
    paper='Rendle, Factorization Machines, ICDM 2010',
    q=(
        'the pairwise term sum_{i<j} e_i * e_j before the sum over d, [B, embed_dim]; logit = sum(q) + bias +'
        ' first-order weights'
    ),
)
class FM(CTRBackbone):
    """Factorization machine.

    Args:
        fields: the dataset's fields; each categorical feature gets a factor e and a scalar weight w.
        embed_dim: factor size (the paper's k), also ``hidden_dim``.
        num_extra_fields: k extra field embeddings the caller appends to E; they join the pairwise term.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.first_order = FieldEmbedding(self.fields, 1)  # w_f, one scalar per feature
        self.bias = nn.Parameter(torch.zeros(1))  # w_0
        self.hidden_dim = embed_dim

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), d] → q = Σ_{i<j} e_i ⊙ e_j: float[B, d] (Lemma 3.1)."""
        return fm_pairwise(E)

    def head(self, q: torch.Tensor) -> torch.Tensor:
        """w_0 + Σ_{i<j} <e_i, e_j>: float[B] (Eq. 1, bias + second-order part)."""
        return q.sum(dim=-1) + self.bias

    def linear_logit(self, batch: Batch) -> torch.Tensor:
        """Σ_f w_f[x_f]: float[B] (Eq. 1, first-order part)."""
        return self.first_order(batch.x).sum(dim=(1, 2))
