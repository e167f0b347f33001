"""FLIP (Wang et al., "FLIP: Fine-grained Alignment between ID-based Models and Pretrained Language Models for CTR
Prediction", RecSys 2024): the pretraining objectives and the jointly fine-tuned model.

    q  = ID(x),  q̃ = ID(x̃)                   the backbone's hidden state on the complete / field-masked row
    T  = PLM(t), T̃ = PLM(t̃)                  token states of the complete / field-masked row text; h = T[CLS]
    ICL: InfoNCE(P_id(q), P_text(h)) / τ     instance-level contrastive, symmetric, dot product (as the code)
    MTM: x̃'s masked fields recovered from [q̃ ; attn(q̃, T)]   (the PLM reads the complete text)
    MLM: t̃'s masked tokens recovered from [T̃_i ; q]          (the ID model reads the complete row)
    fine-tuning: ŷ = σ(α·y_ID + (1 − α)·y_PLM), loss BCE(ŷ) + BCE(y_ID) + BCE(y_PLM)   (``finetune_all.py``)

Field-level masking: on the ID side the masked fields are set to 0 (the unknown index; the authors set them to 0
too); on the text side every token of a masked field's value becomes [MASK].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ctrbench.models.base import Batch, FieldEmbedding
from ctrbench.text import IGNORE, info_nce
from ctrbench_flip.config import FLIPConfig
from ctrbench_flip.text import FieldTokens


class ProjectionHead(nn.Module):
    """The authors' projection: p = Linear(x); LayerNorm(p + Dropout(Linear(GELU(p)))). float[B, in] → [B, out]."""

    def __init__(self, input_dim: int, output_dim: int, dropout: float) -> None:
        super().__init__()
        self.projection = nn.Linear(input_dim, output_dim)
        self.fc = nn.Linear(output_dim, output_dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.projection(x)
        return self.norm(p + self.dropout(self.fc(F.gelu(p))))


def choose_fields(batch_size: int, num_fields: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """bool[B, F]: ``max(1, ⌊F·ratio⌋)`` distinct fields per row, drawn uniformly (on the CPU ``generator``)."""
    k = max(1, int(num_fields * ratio))
    order = torch.rand(batch_size, num_fields, generator=generator).argsort(dim=1)
    return torch.zeros(batch_size, num_fields, dtype=torch.bool).scatter(1, order[:, :k], True)


def mask_fields(x: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """The row with its masked fields set to 0, the unknown index: int64[B, F]."""
    return x.masked_fill(masked.to(x.device), 0)


def mask_text(ids: torch.Tensor, field_of: torch.Tensor, masked: torch.Tensor, mask_token_id: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted ids, labels), int64[B, T]: every token of a masked field's value becomes [MASK]; labels hold the
    original ids there and ``IGNORE`` elsewhere."""
    masked = masked.to(ids.device)
    hit = (field_of >= 0) & masked.gather(1, field_of.clamp_min(0))
    return ids.masked_fill(hit, mask_token_id), torch.where(hit, ids, torch.full_like(ids, IGNORE))


def field_recovery_loss(enc: torch.Tensor, masked: torch.Tensor, x: torch.Tensor, table: FieldEmbedding,
                        bias: FieldEmbedding) -> torch.Tensor:
    """Mean over the masked (row, field) pairs of the cross-entropy of the true value among all the field's values:
    logit(v) = ⟨enc[b, f], W_f[v]⟩ + c_f[v]. ``enc``: float[B, F, P]; ``masked``: bool[B, F]; ``x``: the true
    indices int64[B, F]."""
    total, count = enc.new_zeros(()), 0
    for f, name in enumerate(table.field_names):
        rows = masked[:, f]
        if rows.any():
            logits = enc[rows, f] @ table.table(name).T + bias.table(name).squeeze(-1)
            total = total + F.cross_entropy(logits.float(), x[rows, f], reduction="sum")
            count += int(rows.sum())
    return total / max(count, 1)


class FLIPModel(nn.Module):
    """The ID-based backbone and the PLM with FLIP's pretraining heads and its fusion. ``forward(batch)`` is the
    fused logit (fine-tuning and inference); `pretrain_losses` the three alignment objectives."""

    def __init__(self, ctr: nn.Module, plm: nn.Module, tokens: FieldTokens, cfg: FLIPConfig) -> None:
        super().__init__()
        self.ctr, self.plm, self.tokens, self.cfg = ctr, plm, tokens, cfg
        D, H = ctr.hidden_dim, plm.hidden_size
        self.rec_projection = ProjectionHead(D, cfg.projection_dim, cfg.head_dropout)
        self.text_projection = ProjectionHead(H, cfg.projection_dim, cfg.head_dropout)
        self.query = nn.Sequential(nn.Linear(D, H), nn.LayerNorm(H))  # the authors' Simple_Attention
        self.field_encoder = nn.Linear(D + H, len(ctr.fields) * cfg.field_proj_size)
        self.field_values = FieldEmbedding(ctr.fields, cfg.field_proj_size)
        self.field_bias = FieldEmbedding(ctr.fields, 1)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(cfg.field_proj_size)
            self.field_values.weight.uniform_(-bound, bound)
            self.field_bias.weight.zero_()
        self.mlm_head = nn.Sequential(nn.Linear(H + D, H), nn.Tanh(), nn.Dropout(cfg.head_dropout),
                                      nn.Linear(H, plm.vocab_size))
        self.text_dense = nn.Linear(H, 1)
        self.alpha = nn.Parameter(torch.tensor(float(cfg.alpha_init)))

    def id_state(self, batch: Batch, x: torch.Tensor | None = None) -> torch.Tensor:
        """q: float[B, hidden_dim], the backbone's hidden state of the row (or of ``x`` in its place)."""
        if x is not None:
            batch = Batch(x, batch.y, batch.idx, batch.sequences)
        return self.ctr.interact(self.ctr.embed(batch))

    def text(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.tokens.gather(batch.idx, batch.x.device)

    # -- pretraining -----------------------------------------------------------------------------------------
    def icl_loss(self, q: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Instance-level contrastive loss: symmetric InfoNCE of the projections, dot product / τ."""
        return info_nce(self.rec_projection(q), self.text_projection(cls), self.cfg.temperature, normalize=False)

    def mtm_loss(self, batch: Batch, states: torch.Tensor, mask: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Masked tabular modelling: the field-masked row's state q̃ attends over the complete text's tokens, and
        [q̃ ; attended] scores every value of each masked field."""
        q_masked = self.id_state(batch, mask_fields(batch.x, masked))
        scores = (self.query(q_masked).unsqueeze(1) @ states.transpose(1, 2)).squeeze(1)  # [B, T]
        scores = scores.masked_fill(~mask.bool(), torch.finfo(scores.dtype).min)  # padding never attended
        attended = (torch.softmax(scores, dim=-1).unsqueeze(1) @ states).squeeze(1)  # [B, H]
        enc = self.field_encoder(torch.cat([q_masked, attended], dim=-1)).view(len(batch), len(self.ctr.fields), -1)
        return field_recovery_loss(enc, masked.to(enc.device), batch.x, self.field_values, self.field_bias)

    def mlm_loss(self, q: torch.Tensor, masked_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
                 ) -> torch.Tensor | None:
        """Masked language modelling with the ID model's help: each masked token's state next to q."""
        where = labels != IGNORE
        if not where.any():
            return None
        states = self.plm.encode(masked_ids, mask)[where]  # [N, H]
        rows = where.nonzero()[:, 0]
        logits = self.mlm_head(torch.cat([states, q[rows]], dim=-1))
        return F.cross_entropy(logits.float(), labels[where])

    def pretrain_losses(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        ids, mask, field_of = self.text(batch)
        q = self.id_state(batch)
        states = self.plm.encode(ids, mask)
        losses: dict[str, torch.Tensor] = {}
        if cfg.use_icl:
            losses["icl"] = self.icl_loss(q, self.plm.pooled(states, mask))
        if cfg.use_mtm:
            masked = choose_fields(len(batch), len(self.ctr.fields), cfg.field_mask_ratio, generator)
            losses["mtm"] = self.mtm_loss(batch, states, mask, masked)
        if cfg.use_mlm:
            masked = choose_fields(len(batch), len(self.ctr.fields), cfg.text_mask_ratio, generator)
            corrupted, labels = mask_text(ids, field_of, masked, self.plm.mask_token_id)
            mlm = self.mlm_loss(q, corrupted, mask, labels)
            if mlm is not None:
                losses["mlm"] = mlm
        return losses

    # -- fine-tuning and inference ---------------------------------------------------------------------------
    def parts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_ID, y_PLM) logits [B]: the backbone's own output, and a linear head on the text's pooled state."""
        ids, mask, _ = self.text(batch)
        y_text = self.text_dense(self.plm.pooled(self.plm.encode(ids, mask), mask)).squeeze(-1)
        return self.ctr(batch), y_text

    def forward(self, batch: Batch) -> torch.Tensor:
        y_id, y_text = self.parts(batch)
        return self.alpha * y_id + (1 - self.alpha) * y_text

    def finetune_loss(self, batch: Batch) -> torch.Tensor:
        """BCE of the fused logit plus BCE of each tower's own (the authors' three-term loss)."""
        y_id, y_text = self.parts(batch)
        fused = self.alpha * y_id + (1 - self.alpha) * y_text
        bce = F.binary_cross_entropy_with_logits
        return bce(fused.float(), batch.y) + bce(y_id.float(), batch.y) + bce(y_text.float(), batch.y)
