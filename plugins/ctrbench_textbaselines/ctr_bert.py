"""CTR-BERT (Muhamed et al., "CTR-BERT: Cost-effective knowledge distillation for billion-parameter teacher
models", NeurIPS 2021 ENLSP workshop).

    u = BERT_user([CLS] user-side text)[CLS]          [B, H]   the row's non-item fields, "label is value."
    i = BERT_item([CLS] item-side text)[CLS]          [B, H]   item id and item-side fields
    q = CTR.interact(CTR.embed(x))                    [B, H_q] the ID features (``use_ids``)
    logit = MLP([u; i; q]) (+ CTR.linear_logit(x))    [B]      late fusion

The towers never see each other's text (the paper's two-tower student, whose item embeddings can be cached).
Optional distillation (``teacher``): a cached stage finetunes a cross-encoder teacher, one PLM over the whole
row text, on the training rows and stores its logits t; the student then minimises
``(1 − α)·BCE(σ(s), y) + α·BCE(σ(s), σ(t))`` (α = ``distill_alpha``).
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctrbench.context import RunContext, predictions_of
from ctrbench.models.base import Batch, CTRBackbone
from ctrbench.results import Predictions
from ctrbench.text import TokenTable, item_side_fields
from ctrbench_textbaselines.common import (
    PredictionHead,
    TextClassifier,
    row_logits,
    row_tokens,
    split_groups,
    train_key,
)
from ctrbench_textbaselines.config import CTRBertConfig


def tower_fields(data: Any) -> tuple[list[str], list[str]]:
    """(user-tower fields, item-tower fields): the item id and item-side fields go to the item tower, every
    other categorical field (user id, user profile, context) to the user tower."""
    item = [data.item_field, *item_side_fields(data)]
    user = [f.name for f in data.fields if f.kind == "categorical" and f.name not in item]
    return user, item


class TwoTowerFusion(nn.Module):
    """Two PLM towers over per-row user and item token tables, fused with the backbone's q by an MLP."""

    def __init__(self, user_tower: Any, item_tower: Any, user_tokens: TokenTable, item_tokens: TokenTable,
                 ctr: CTRBackbone | None, *, hidden: int, dropout: float) -> None:
        super().__init__()
        self.user_tower, self.item_tower, self.ctr = user_tower, item_tower, ctr
        self.user_tokens, self.item_tokens = user_tokens, item_tokens
        width = user_tower.hidden_size + item_tower.hidden_size + (ctr.hidden_dim if ctr is not None else 0)
        self.head = PredictionHead(width, hidden, dropout)

    @staticmethod
    def tower(plm: Any, tokens: TokenTable, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The tower's pooled ([CLS]) state of each row's text: [B, H]."""
        ids, mask = tokens.gather(rows, device, trim=True)
        return plm.pooled(plm.encode(ids, mask), mask)

    def features(self, batch: Batch) -> torch.Tensor:
        """[u; i; q]: [B, H_u + H_i (+ H_q)]."""
        device = self.head.fc.weight.device
        parts = [self.tower(self.user_tower, self.user_tokens, batch.idx, device),
                 self.tower(self.item_tower, self.item_tokens, batch.idx, device)]
        if self.ctr is not None:
            parts.append(self.ctr.interact(self.ctr.embed(batch)).to(parts[0].dtype))
        return torch.cat(parts, dim=-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        logit = self.head(self.features(batch))
        first = self.ctr.linear_logit(batch) if self.ctr is not None else None
        return logit if first is None else logit + first




def distill_loss(student_logit: torch.Tensor, y: torch.Tensor, teacher_logit: torch.Tensor,
                 alpha: float) -> torch.Tensor:
    """``(1 − α)·BCE(σ(s), y) + α·BCE(σ(s), σ(t))``: hard labels plus the teacher's soft labels."""
    bce = nn.functional.binary_cross_entropy_with_logits
    s = student_logit.float()
    return (1 - alpha) * bce(s, y) + alpha * bce(s, torch.sigmoid(teacher_logit.float()))


def train_teacher(ctx: RunContext, cfg: CTRBertConfig, out: Path) -> None:
    """Finetune the cross-encoder teacher on the training rows (validation AUC selects its epoch) and store its
    logits on those rows: ``rows.npy`` and ``logits.npy``."""
    trainer = ctx.trainer
    plm = ctx.plugins.registry("plm").get(cfg.teacher).create()
    teacher = TextClassifier(plm, row_tokens(ctx, plm, cfg.teacher_max_length), hidden=cfg.fusion_hidden,
                           dropout=cfg.dropout).to(ctx.device)
    rows = trainer.train_rows(ctx.data)
    bce = nn.functional.binary_cross_entropy_with_logits
    phase = trainer.phase("CTR-BERT teacher", trainer.row_source(ctx.data, rows),
                          lambda b: bce(teacher(b).float(), b.y), [p for p in teacher.parameters()],
                          model=teacher, monitor=trainer.valid_monitor(teacher, ctx.data),
                          epochs=cfg.teacher_epochs, lr=cfg.teacher_lr)
    report = trainer.engine.run(phase)
    np.save(out / "rows.npy", rows.numpy())
    np.save(out / "logits.npy", row_logits(ctx, teacher, rows).astype(np.float32))
    (out / "teacher.json").write_text(json.dumps({"seconds": report.train_seconds,
                                                  "best_valid_auc": report.best_valid_auc}))


class CTRBert:
    """Method object; `run` is called once per RunSpec."""

    def __init__(self, config: CTRBertConfig) -> None:
        self.config = config

    def build(self, ctx: RunContext) -> TwoTowerFusion:
        """The student: towers from the suite's PLM (a copy for the item tower unless ``shared_towers``)."""
        cfg = self.config
        user_plm = ctx.build_plm()
        item_plm = user_plm if cfg.shared_towers else copy.deepcopy(user_plm)
        user_fields, item_fields = tower_fields(ctx.data)
        ctr = ctx.build_ctr() if cfg.use_ids else None
        return TwoTowerFusion(user_plm, item_plm, row_tokens(ctx, user_plm, cfg.max_length, user_fields),
                              row_tokens(ctx, user_plm, cfg.max_length, item_fields), ctr,
                              hidden=cfg.fusion_hidden, dropout=cfg.dropout)

    def teacher_logits(self, ctx: RunContext) -> tuple[torch.Tensor, dict[str, float]]:
        """The teacher stage's logits as a per-row tensor on the device (0 off the training rows), and its record.
        The key holds the teacher's knobs and every ``train.*`` setting its phase takes, not the student's knobs,
        so students that differ only in their own knobs share one teacher."""
        cfg = self.config
        key = {"data": ctx.data.fingerprint, "seed": ctx.seed, "train": train_key(ctx, "epochs", "lr"),
               **cfg.teacher_key()}
        stage = ctx.stage("ctrbert-teacher", key, lambda d: train_teacher(ctx, cfg, d))
        soft = torch.zeros(ctx.data.num_samples)
        soft[torch.from_numpy(np.load(stage / "rows.npy"))] = torch.from_numpy(np.load(stage / "logits.npy"))
        info = json.loads((stage / "teacher.json").read_text())
        return soft.to(ctx.device), {"teacher_seconds": float(info["seconds"]),
                                     "teacher_valid_auc": float(info["best_valid_auc"])}

    def run(self, ctx: RunContext) -> Predictions:
        cfg = self.config
        model = self.build(ctx).to(ctx.device)
        groups = split_groups(model, [model.user_tower, model.item_tower], cfg.plm_lr)
        extra: dict[str, float] = {}
        if cfg.teacher is None:
            report = ctx.trainer.fit(model, ctx.data, params=groups)  # plain BCE
        else:
            soft, extra = self.teacher_logits(ctx)
            report = ctx.trainer.fit(model, ctx.data, params=groups, loss_fn=lambda m, b: distill_loss(
                m(b), b.y, soft[b.idx], cfg.distill_alpha))
        preds = predictions_of(ctx, model, report.train_seconds, report.epochs_run)
        preds.extra.update(best_epoch=float(report.best_epoch), **extra)
        return preds


def create(**config: Any) -> CTRBert:
    """Factory registered as `ctr-bert`; its keyword arguments are `CTRBertConfig`'s fields."""
    return CTRBert(CTRBertConfig(**config))


create.__signature__ = inspect.signature(CTRBertConfig)  # type: ignore[attr-defined]
