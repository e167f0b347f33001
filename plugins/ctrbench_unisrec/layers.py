"""UniSRec's layers (Hou et al., "Towards Universal Sequence Representation Learning for Recommender Systems", KDD
2022): the MoE-enhanced parametric-whitening adaptor (§2.2) and the Transformer sequence encoder (§2.3).

    x̃_k = (x − b_k) W_k                                   (Eq. 1, parametric whitening, expert k)
    g   = softmax(x W_1 + δ),  δ = ε · softplus(x W_2)     (Eq. 3, gating; δ only in training, ε ~ N(0, 1))
    v   = Σ_k g_k x̃_k                                      (Eq. 2)
    f_j^0 = v_j + p_j,   F^{l+1} = FFN(MHAttn(F^l))        (Eq. 4-5, SASRec-style, causal)
    s   = f_n^L, the output at the most recent item         (Eq. 6)

As in the authors' code, dropout is applied to x inside each expert (``lin(dropout(x) − b)``), the gate and noise
weights start at zero and the noise standard deviation is ``softplus(x W_2) + 1e-2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PWLayer(nn.Module):
    """One parametric-whitening expert: float[..., in] → float[..., out] = (dropout(x) − b) W."""

    def __init__(self, input_size: int, output_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(input_size))
        self.lin = nn.Linear(input_size, output_size, bias=False)
        nn.init.normal_(self.lin.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.dropout(x) - self.bias)  # Eq. 1


class MoEAdaptor(nn.Module):
    """MoE-enhanced adaptor: float[..., plm_size] → float[..., hidden_size] (Eq. 2-3)."""

    def __init__(self, n_exps: int, input_size: int, output_size: int, dropout: float = 0.0,
                 noise: bool = True) -> None:
        super().__init__()
        self.noise = noise
        self.experts = nn.ModuleList(PWLayer(input_size, output_size, dropout) for _ in range(n_exps))
        self.w_gate = nn.Parameter(torch.zeros(input_size, n_exps))   # W_1
        self.w_noise = nn.Parameter(torch.zeros(input_size, n_exps))  # W_2

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """float[..., n_exps]: softmax(x W_1 + δ), the noise δ only in training (Eq. 3)."""
        logits = x @ self.w_gate
        if self.noise and self.training:
            std = F.softplus(x @ self.w_noise) + 1e-2
            logits = logits + torch.randn_like(logits) * std
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        experts = torch.stack([e(x) for e in self.experts], dim=-2)  # [..., n_exps, out]
        return (self.gates(x).unsqueeze(-1) * experts).sum(dim=-2)  # Eq. 2


def chronological_items(history: torch.Tensor) -> torch.Tensor:
    """int64[B, L] most recent first, left-aligned → oldest first, left-aligned (0 = padding after the items)."""
    valid = history != 0
    n = valid.sum(dim=1, keepdim=True)
    steps = torch.arange(history.shape[1], device=history.device)
    src = torch.where(steps < n, n - 1 - steps, steps)
    return torch.gather(history, 1, src).masked_fill(steps >= n, 0)


class SequenceEncoder(nn.Module):
    """The SASRec-style Transformer of UniSRec: (float[B, L, H] item embeddings oldest first, bool[B, L] valid
    prefix) → float[B, H], the output at each row's most recent item (a zero vector for an empty history).

    Post-LN layers with GELU (RecBole's ``TransformerEncoder``), causal attention that also never attends to
    padding, so the output depends on the valid items alone. Weights N(0, 0.02), LayerNorm eps 1e-12 (SASRec's).
    """

    def __init__(self, max_length: int, hidden_size: int, n_layers: int, n_heads: int, inner_size: int,
                 dropout: float) -> None:
        super().__init__()
        self.position = nn.Embedding(max_length, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden_size, n_heads, inner_size, dropout, activation="gelu",
                                           batch_first=True, layer_norm_eps=1e-12)
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        for layer_ in self.layers.layers:  # the attention's packed in-projection is a bare Parameter
            nn.init.normal_(layer_.self_attn.in_proj_weight, std=0.02)
            nn.init.zeros_(layer_.self_attn.in_proj_bias)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Position embeddings and Transformer layers: what the authors fix during fine-tuning."""
        return [*self.position.parameters(), *self.layers.parameters()]

    def forward(self, emb: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        B, L, _ = emb.shape
        n = valid.sum(dim=1)
        h = self.dropout(self.norm(emb + self.position.weight[:L]))  # Eq. 4
        causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=emb.device), diagonal=1)
        padding = ~valid
        padding[:, 0] &= n > 0  # an empty history attends to its (zero-length) first slot: no all-masked row
        out = self.layers(h, mask=causal, src_key_padding_mask=padding)
        last = out[torch.arange(B, device=emb.device), (n - 1).clamp_min(0)]  # Eq. 6
        return torch.where((n > 0).unsqueeze(-1), last, torch.zeros_like(last))
