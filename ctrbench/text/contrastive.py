"""Contrastive losses with in-batch negatives: InfoNCE (van den Oord et al. 2018; CLIP's symmetric form, Radford et
al. 2021) and unsupervised SimCSE (Gao et al., EMNLP 2021), for text-text and text-ID alignment (CELA's
item-level alignment, its SimCSE domain-adaptive pretraining).

``info_nce(a, b)`` with ``symmetric=False`` is sentence-transformers' ``MultipleNegativesRankingLoss`` with
``scale = 1 / temperature``: row i of ``a`` must pick row i of ``b`` among all rows of ``b``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Encode = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def similarity_logits(a: torch.Tensor, b: torch.Tensor, temperature: float | torch.Tensor,
                      normalize: bool = True) -> torch.Tensor:
    """``[B, B]``: ``sim(a_i, b_j) / temperature``, cosine similarity (``normalize``) or the dot product."""
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be [B, d]; got {tuple(a.shape)} and {tuple(b.shape)}")
    if not isinstance(temperature, torch.Tensor) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return a @ b.T / temperature


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float | torch.Tensor = 0.07, *, symmetric: bool = True,
             normalize: bool = True, keys: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE over a batch of pairs ``(a_i, b_i)``, ``a``/``b`` ``[B, d]``; the other rows are the negatives.

    ``ℓ_i = -log softmax_j(sim(a_i, b_j) / τ)_i`` averaged over i (a → b); with ``symmetric`` (CLIP) the mean of
    that and the b → a loss. ``temperature`` may be a tensor (a learned one). ``normalize``: cosine similarity
    (else the dot product). ``keys`` ``[B]``: rows with equal keys (the same item twice in a batch) are not
    negatives of each other; their entries leave the softmax, the diagonal stays the positive. Returns a scalar.
    """
    logits = similarity_logits(a, b, temperature, normalize)
    n = logits.shape[0]
    if keys is not None:
        if keys.shape != (n,):
            raise ValueError(f"keys must be [B={n}], got {tuple(keys.shape)}")
        keys = keys.to(logits.device)
        duplicate = (keys[:, None] == keys[None, :]) & ~torch.eye(n, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(duplicate, float("-inf"))
    target = torch.arange(n, device=logits.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, target)) / 2
    return loss


def simcse_loss(encode: Encode, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                temperature: float | torch.Tensor = 0.05, *, symmetric: bool = False) -> torch.Tensor:
    """Unsupervised SimCSE: each text's positive is itself encoded again under another dropout mask.

    ``encode(ids, mask) -> [N, d]`` is the sentence encoder (e.g. ``lambda i, m: plm.pooled(plm.encode(i, m), m)``),
    in training mode so dropout is on. The batch ``[B, T]`` is encoded once as ``[2B, T]`` (the two copies, as
    the reference implementation does), and ``info_nce(z1, z2, τ)`` with cosine similarity is returned (one
    direction, as in the paper; ``symmetric`` averages both). With dropout off both views are equal and the loss is
    ``info_nce(z, z, τ)``.
    """
    if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
        raise ValueError(f"input_ids and attention_mask must both be [B, T]; got {tuple(input_ids.shape)} and "
                         f"{tuple(attention_mask.shape)}")
    n = input_ids.shape[0]
    z = encode(torch.cat([input_ids, input_ids]), torch.cat([attention_mask, attention_mask]))
    if z.dim() != 2 or z.shape[0] != 2 * n:
        raise ValueError(f"encode must return [2B={2 * n}, d] for a [2B, T] batch, got {tuple(z.shape)}")
    return info_nce(z[:n], z[n:], temperature, symmetric=symmetric)
