"""Behaviour-sequence layers: DIN's activation unit and DIEN's interest extractor + AUGRU evolution.

Histories arrive as the dataset stores them (``CTRData.sequences``): int64[B, L], left-aligned, most
recent first, 0 = padding. Every layer here takes the embedded history ``H``: float[B, L, d], the target
item's embedding ``v``: float[B, d] and the validity mask ``mask``: bool[B, L] (``index != 0``), and
padded positions contribute exactly nothing: their embeddings are zeroed, they get no attention score, and
the recurrences do not step on them.

References: Zhou et al., Deep Interest Network for Click-Through Rate Prediction, KDD 2018 (DIN);
Zhou et al., Deep Interest Evolution Network for Click-Through Rate Prediction, AAAI 2019 (DIEN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.data.types import Field
from ctrbench.models.base import Batch
from ctrbench.models.layers import activation_layer, init_linear

__all__ = ["Dice", "ActivationUnit", "din_pooling", "AUGRUCell", "InterestEvolution", "find_history_field",
           "batch_history", "chronological"]


def find_history_field(model: str, fields: Sequence[Field], sequence_fields: Sequence[Field], name: str) -> Field:
    """The sequence field ``name`` a sequence model reads, checked against the categorical fields it shares.

    Raises ``ValueError`` naming the model when the field is absent (the dataset was built without a
    history), shares no categorical field, or has a larger index space than the table it shares.
    """
    by_name = {f.name: f for f in sequence_fields}
    if name not in by_name:
        have = ", ".join(by_name) or "none"
        raise ValueError(f"{model}: needs the sequence field '{name}' (a user history) among its fields, but the "
                         f"sequence fields are: {have}; build the dataset with history_length > 0 "
                         f"(movielens-100k, synthetic) or set history_field")
    seq = by_name[name]
    tables = {f.name: f for f in fields}
    if seq.shares not in tables:
        raise ValueError(f"{model}: sequence field '{name}' must share a categorical field's embedding table "
                         f"(Field.shares, e.g. 'item_id'), got shares={seq.shares!r}")
    if seq.vocab_size > tables[seq.shares].vocab_size:
        raise ValueError(f"{model}: sequence field '{name}' has vocab_size {seq.vocab_size}, larger than the "
                         f"table of '{seq.shares}' it shares ({tables[seq.shares].vocab_size})")
    return seq


def batch_history(batch: Batch, name: str, model: str) -> torch.Tensor:
    """``batch.sequences[name]`` (int64[B, L]), or a ``ValueError`` naming the model when the batch lacks it."""
    if name not in batch.sequences:
        raise ValueError(f"{model}: the batch has no sequences['{name}'] (it has: "
                         f"{', '.join(batch.sequences) or 'none'}); build the dataset with a history")
    return batch.sequences[name]


class Dice(nn.Module):
    """DIN's data-adaptive activation: f(s) = p(s)·s + (1 − p(s))·α·s, p(s) = σ((s − E[s]) / √(Var[s] + ε)).

    float[N, H] → float[N, H]. E[s] and Var[s] are the mini-batch statistics in training (running averages,
    momentum 0.01, in eval and for batches of fewer than two rows), ε = 1e-8 as in the paper; α is learnt
    per unit, initialised at 0 as in FuxiCTR.
    """

    def __init__(self, num_features: int, eps: float = 1e-8, momentum: float = 0.01) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.alpha = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        x = s.float() if s.dtype in (torch.float16, torch.bfloat16) else s  # ε = 1e-8 vanishes in float16
        if self.training and x.shape[0] > 1:
            mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(x.detach().var(dim=0, unbiased=True), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((x - mean) / torch.sqrt(var + self.eps))
        return (p * x + (1 - p) * self.alpha * x).to(s.dtype)


class ActivationUnit(nn.Module):
    """DIN's local activation unit (Fig. 2): a(e_j, v_A) = MLP([e_j, v_A, e_j − v_A, e_j ⊙ v_A]) ∈ R.

    (float[N, d], float[N, d]) → float[N]. Hidden layers: Linear → Dice (or any ``activation_layer`` name,
    e.g. prelu, sigmoid); the output is one linear unit, with no squashing, as in FuxiCTR's default.
    """

    def __init__(self, embed_dim: int, hidden_units: Sequence[int] = (64,), activation: str = "dice") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 4 * embed_dim
        for units in hidden_units:
            layers.append(init_linear(nn.Linear(width, int(units))))
            layers.append(Dice(int(units)) if activation.lower() == "dice" else activation_layer(activation))
            width = int(units)
        layers.append(init_linear(nn.Linear(width, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, e: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([e, v, e - v, e * v], dim=-1)).squeeze(-1)


def din_pooling(unit: ActivationUnit, H: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                softmax: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """DIN Eq. 3: v_U(A) = Σ_j a(e_j, v_A) e_j over the valid positions j. Returns (v_U(A) [B, d], weights [B, L]).

    The unit is evaluated on valid positions only (so Dice's batch statistics never see padding) and
    padded positions get weight 0 and a zeroed embedding. The weights are not normalised, as in the paper
    ("the normalization with softmax on the output of a(·) is abandoned"); ``softmax=True`` normalises them
    over the valid positions instead (FuxiCTR's ``din_use_softmax``; an empty history then pools to 0).
    """
    B, L, d = H.shape
    H = H.masked_fill(~mask.unsqueeze(-1), 0.0)
    scores = unit(H[mask], v.unsqueeze(1).expand(B, L, d)[mask])  # [number of valid positions]
    weights = H.new_zeros(B, L).index_put((mask,), scores.to(H.dtype))
    if softmax:
        weights = torch.softmax(weights.masked_fill(~mask, torch.finfo(H.dtype).min), dim=-1) * mask
    return torch.einsum("bl,bld->bd", weights, H), weights


def chronological(H: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Most-recent-first, left-aligned → oldest-first, left-aligned: ([B, L, d], [B, L]) → same shapes.

    Row b's valid prefix of length n_b is reversed in place; padding stays at the end (zeroed), so a
    recurrence run left to right reaches each row's last real step before any padding.
    """
    B, L = mask.shape
    lengths = mask.sum(dim=1, keepdim=True)  # [B, 1]
    steps = torch.arange(L, device=H.device)
    valid = steps < lengths  # [B, L], the same count, now as a prefix
    src = torch.where(valid, lengths - 1 - steps, steps)  # position t takes old position n_b - 1 - t
    H = torch.gather(H, 1, src.unsqueeze(-1).expand_as(H)).masked_fill(~valid.unsqueeze(-1), 0.0)
    return H, valid


class AUGRUCell(nn.Module):
    """DIEN's GRU with attentional update gate, one step (Eq. 1–3 with Eq. 10–11 in place of Eq. 4).

    (i_t [B, n_I], h'_{t-1} [B, n_H], a_t [B]) → h'_t [B, n_H]:

        u'_t = σ(W^u i_t + U^u h'_{t-1} + b^u)                     (Eq. 1, update gate)
        r'_t = σ(W^r i_t + U^r h'_{t-1} + b^r)                     (Eq. 2, reset gate)
        h̃'_t = tanh(W^h i_t + r'_t ∘ (U^h h'_{t-1}) + b^h)         (Eq. 3)
        ũ'_t = a_t · u'_t                                          (Eq. 10)
        h'_t = (1 − ũ'_t) ∘ h'_{t-1} + ũ'_t ∘ h̃'_t                  (Eq. 11)

    ``x2h`` holds [W^u; W^r; W^h] and [b^u; b^r; b^h], ``h2h`` holds [U^u; U^r; U^h]; initialised
    U(−1/√n_H, 1/√n_H) like ``torch.nn.GRUCell``.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.x2h = nn.Linear(input_size, 3 * hidden_size)
        self.h2h = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, i: torch.Tensor, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        xu, xr, xh = self.x2h(i).chunk(3, dim=-1)
        hu, hr, hh = self.h2h(h).chunk(3, dim=-1)
        u = torch.sigmoid(xu + hu)  # Eq. 1
        r = torch.sigmoid(xr + hr)  # Eq. 2
        candidate = torch.tanh(xh + r * hh)  # Eq. 3
        u = a.unsqueeze(-1) * u  # Eq. 10
        return (1 - u) * h + u * candidate  # Eq. 11


class InterestEvolution(nn.Module):
    """DIEN's interest extractor (GRU, Eq. 1–4) and interest evolving layer (attention Eq. 7 + AUGRU).

    (H [B, L, d] most recent first, v [B, d], mask [B, L]) → h'_T: float[B, d], the evolved interest
    after each user's most recent behaviour (0 for an empty history). Both GRUs have ``d`` units.

        h_t  = GRU(e_t, h_{t-1})                                     (extractor, oldest → newest)
        a_t  = exp(h_t W v) / Σ_j exp(h_j W v)   over valid j         (Eq. 7, bilinear attention)
        h'_t = AUGRU(h_t, h'_{t-1}, a_t)                              (Eq. 10–11)

    Padding cannot reach h'_T: the history is first put in time order with the padding after every
    row's last real step (``chronological``), so the causal extractor's states at real steps never
    see padding, the attention gives padding weight 0, and the evolution keeps h'_{t-1} on padded steps.
    The auxiliary loss (Eq. 5–6, next-behaviour prediction against sampled negatives) is not used: the
    backbone interface returns logits only and the datasets carry no negative sequences (FuxiCTR's default
    ``aux_loss_alpha=0`` also leaves it out).
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.extractor = nn.GRU(embed_dim, embed_dim, batch_first=True)
        self.W = nn.Parameter(torch.empty(embed_dim, embed_dim))  # Eq. 7: W ∈ R^{n_H × n_A}
        nn.init.xavier_normal_(self.W)
        self.evolution = AUGRUCell(embed_dim, embed_dim)

    def forward(self, H: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        H, valid = chronological(H, mask)
        h, _ = self.extractor(H)  # [B, L, d]; states at real steps depend on real steps only (causal)
        scores = torch.einsum("bld,de,be->bl", h, self.W, v)  # h_t W v_A
        scores = scores.float().masked_fill(~valid, torch.finfo(torch.float32).min)
        a = torch.softmax(scores, dim=-1) * valid  # Eq. 7, 0 on padding (and for an empty history)
        state = h.new_zeros(h.shape[0], h.shape[2])
        for t in range(h.shape[1]):
            new = self.evolution(h[:, t], state, a[:, t])
            state = torch.where(valid[:, t].unsqueeze(-1), new, state)
        return state
