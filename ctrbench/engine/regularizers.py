"""FuxiCTR-style L2 regularisers, added to a phase's loss when their weight is not zero.

FuxiCTR (``embedding_regularizer``, ``net_regularizer``) penalises embedding tables and the other weight
matrices with separate strengths, because the tables hold most parameters and overfit first on sparse IDs.
Here: ``embedding/2 · Σ‖E‖²`` over every embedding table (``nn.Embedding``, ``nn.EmbeddingBag`` and the CTR
backbones' `FieldEmbedding`, first-order tables included) plus ``net/2 · Σ‖W‖²`` over every other
parameter named ``*.weight`` with two or more dimensions (biases and normalisation scales are not penalised).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ctrbench.models.base import FieldEmbedding

EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag, FieldEmbedding)

def l2_regularizer(model: nn.Module, embedding: float, net: float) -> Callable[[], torch.Tensor] | None:
    """A closure returning the penalty of the model's current weights, or None when both weights are zero."""
    if not embedding and not net:
        return None
    emb_ids = {id(m.weight) for m in model.modules() if isinstance(m, EMBEDDINGS)}
    emb = [p for p in model.parameters() if id(p) in emb_ids and p.requires_grad]
    other = [p for n, p in model.named_parameters()
             if id(p) not in emb_ids and p.requires_grad and n.endswith("weight") and p.dim() >= 2]

    def penalty() -> torch.Tensor:
        total = torch.zeros((), device=next(model.parameters()).device)
        if embedding:
            total = total + embedding / 2 * sum(p.pow(2).sum() for p in emb)
        if net:
            total = total + net / 2 * sum(p.pow(2).sum() for p in other)
        return total

    return penalty
