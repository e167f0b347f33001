"""Logistic regression over one-hot field features (e.g. Richardson et al., WWW 2007; McMahan et al., KDD 2013).

    logit = b + Σ_f w_f[x_f]

LR's "embedding" is the first-order weight of each feature, so ``embed`` returns ``[B, F, 1]`` and
``embed_dim`` is 1 whatever the caller asks for (the argument is accepted for a uniform factory
signature). ``q`` is the vector of per-field weights ``[B, F(+k)]`` and the head is their sum plus a bias:
no learnable projection, so the model has exactly Σ vocab + 1 parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.data.types import Field
from ctrbench.models.base import CTRBackbone, backbone


@backbone(
    "lr",
    summary='Logistic regression on one-hot field features (first-order weights only)',
    paper='Richardson et al., Predicting Clicks: Estimating the Click-Through Rate for New Ads, WWW 2007',
    q='the per-field first-order weights w_f[x_f], [B, F(+k)]; logit = sum(q) + bias',
)
class LR(CTRBackbone):
    """Logistic regression.

    Args:
        fields: the dataset's fields; each categorical feature gets one scalar weight.
        embed_dim: ignored (LR's "embeddings" are scalars, so ``self.embed_dim == 1``); accepted so every
            backbone has the same factory signature.
        num_extra_fields: k extra "fields" the caller appends to E; for LR they are [B, k, 1] scalars
            added to the logit.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0) -> None:
        super().__init__(fields, 1, num_extra_fields)  # embed_dim = 1: E holds the weights w_f[x_f]
        self.hidden_dim = self.num_inputs
        self.bias = nn.Parameter(torch.zeros(1))

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), 1] → q = (w_1[x_1], …, w_F[x_F]): float[B, F(+k)]."""
        return E.squeeze(-1)

    def head(self, q: torch.Tensor) -> torch.Tensor:
        """logit = b + Σ_f w_f[x_f]: float[B]."""
        return q.sum(dim=-1) + self.bias
