"""SLLM4CTR's two additions to TallRec's loss: the adaptive temperature (Eq. 2) and the label-matching loss (Eq. 4).

Both use only what one forward pass already gives (the click embedding ``e_L`` and the prompt embedding ``e_c`` of
every prompt in the batch), so they add no parameters and no extra forward passes — the paper's point.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _float32(t: torch.Tensor) -> torch.autocast:
    """Autocast off: under it, ``a @ b`` of float32 inputs runs in bf16/fp16 anyway, and a Gram matrix of raw hidden
    states in bf16 makes ``logdet`` NaN (seen on the first step of a CPU bf16 run)."""
    return torch.autocast(t.device.type, enabled=False)


def temperature_distribution(prompt: torch.Tensor, click: torch.Tensor) -> torch.Tensor:
    """``P[i, j] = exp(s(e_c_j, e_L_i)) / sum_j' exp(s(e_c_j', e_L_i))``: for each click embedding, a softmax over
    the batch's prompt embeddings of their cosine similarity. Each row sums to 1 over the batch."""
    with _float32(click):
        sim = F.normalize(click.float(), dim=-1) @ F.normalize(prompt.float(), dim=-1).t()  # [i, j] = s(e_c_j, e_L_i)
        return torch.softmax(sim, dim=1)


def adaptive_temperature(prompt: torch.Tensor, click: torch.Tensor, scale: str = "batch") -> torch.Tensor:
    """Eq. 2: ``T_i = P[i, i]``, the share of sample i's own prompt among all prompts of the batch.

    ``scale="none"`` returns Eq. 2 as printed (``T`` in (0, 1], ~1/|B| when the prompts are alike, which shrinks
    every logit by the batch size); ``scale="batch"`` multiplies by |B| so that indistinguishable prompts give
    ``T = 1`` (TallRec's logits) — the magnitudes of the paper's own examples (T = 0.78 and 1.21, Appendix A.6).
    """
    t = torch.diagonal(temperature_distribution(prompt, click))
    if scale == "batch":
        return t * t.shape[0]
    if scale == "none":
        return t
    raise ValueError(f"temperature scale must be 'batch' or 'none', got {scale!r}")


def _logdet_volume(e: torch.Tensor, weights: torch.Tensor, alpha: float) -> torch.Tensor:
    """``log det(I_d + d / (tr(W) alpha^2) E^T W E)`` through the |B| x |B| form (Sylvester's identity:
    ``det(I_d + c A^T A) = det(I_B + c A A^T)`` with ``A = W^1/2 E``), which is cheaper when |B| < d."""
    d = e.shape[1]
    tr = weights.sum()
    a = weights.clamp(min=0).sqrt().unsqueeze(1) * e
    gram = a @ a.t()
    eye = torch.eye(e.shape[0], dtype=e.dtype, device=e.device)
    return torch.logdet(eye + (d / (tr * alpha ** 2)) * gram)


def label_matching_loss(click: torch.Tensor, p_yes: torch.Tensor, alpha: float = 0.1,
                        terms: str = "both", normalize: bool = False) -> torch.Tensor:
    """Eq. 4: the p-weighted volumes of the click / non-click embeddings minus half the volume of all of them.

    ``L = sum_k tr(Pi_k)/(2|B|) * logdet(I + d/(tr(Pi_k) alpha^2) E^T Pi_k E) - 1/2 logdet(I + d/(|B| alpha^2) E^T E)``
    with ``Pi_1 = diag(p_yes)``, ``Pi_0 = diag(1 - p_yes)`` — MCR²'s ``R_c - R`` (Yu et al. 2020) with ``alpha`` for
    its epsilon. ``terms``: "both" (the loss), "compress" (first term only: the paper's "w/o Label Matching
    Loss-2"), "expand" (second term only: "w/o Label Matching Loss-1"). ``normalize``: L2-normalise each row of
    ``E`` first, as MCR² does with its features (the paper does not say; as printed ``E`` is the raw hidden state,
    and with |B| <= d its log det(E E^T) parts cancel, see docs/methods/sllm4ctr.md).
    Computed in float32 whatever the autocast dtype: a log-determinant in bf16 is noise.
    """
    with _float32(click):
        return _label_matching(click.float(), p_yes.float(), alpha, terms, normalize)


def _label_matching(e: torch.Tensor, p: torch.Tensor, alpha: float, terms: str, normalize: bool) -> torch.Tensor:
    if normalize:
        e = F.normalize(e, dim=-1)
    b = e.shape[0]
    loss = e.new_zeros(())
    if terms in ("both", "compress"):
        for w in (1.0 - p, p):
            tr = w.sum()
            if tr > 0:
                loss = loss + tr / (2 * b) * _logdet_volume(e, w, alpha)
    if terms in ("both", "expand"):
        loss = loss - 0.5 * _logdet_volume(e, torch.ones_like(p), alpha)
    if terms not in ("both", "compress", "expand"):
        raise ValueError(f"label-matching terms must be 'both', 'compress' or 'expand', got {terms!r}")
    return loss
