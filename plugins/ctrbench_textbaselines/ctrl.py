"""CTRL (Li et al., "CTRL: Connect Collaborative and Language Model for CTR Prediction", 2023, arXiv:2306.02841).

Stage 1, cross-modal knowledge alignment (cached): each training sample is seen twice, as its ID features by the
CTR backbone and as its text by the PLM; small linear heads project both into one space and InfoNCE with
in-batch negatives pulls the two views of the same sample together (interaction level: one pair per row):

    z_tab  = W_tab · q,       q = CTR.interact(CTR.embed(x))        [B, proj_dim]
    z_text = W_text · h,      h = PLM([CLS] row text)[CLS]          [B, proj_dim]
    s_ij   = cos(z_tab_i, z_text_j) / τ
    L      = ½ (CE(s, diag) + CE(sᵀ, diag))                          tabular→text and text→tabular

Stage 2, supervised finetuning: the aligned backbone alone (exactly the suite's backbone class, its aligned
weights loaded; heads and PLM dropped) is finetuned with BCE and served: no PLM at inference.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctrbench.context import RunContext, predictions_of
from ctrbench.models.base import Batch, CTRBackbone
from ctrbench.results import Predictions
from ctrbench.text import TokenTable, info_nce
from ctrbench_textbaselines.common import ctr_ref, plm_ref, row_tokens
from ctrbench_textbaselines.config import CTRLConfig


class CTRLAligner(nn.Module):
    """CTR backbone + PLM + the two projection heads, for the alignment stage only."""

    def __init__(self, ctr: CTRBackbone, plm: Any, tokens: TokenTable, *, proj_dim: int, temperature: float,
                 symmetric: bool = True) -> None:
        super().__init__()
        self.ctr, self.plm, self.tokens = ctr, plm, tokens
        self.ctr_proj = nn.Linear(ctr.hidden_dim, proj_dim)
        self.text_proj = nn.Linear(plm.hidden_size, proj_dim)
        self.temperature, self.symmetric = temperature, symmetric

    def representations(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_tab, z_text), both [B, proj_dim]: the two views of the same rows."""
        q = self.ctr.interact(self.ctr.embed(batch))
        ids, mask = self.tokens.gather(batch.idx, self.ctr_proj.weight.device, trim=True)
        h = self.plm.pooled(self.plm.encode(ids, mask), mask)
        return self.ctr_proj(q), self.text_proj(h.to(q.dtype))

    def loss(self, batch: Batch) -> torch.Tensor:
        z_tab, z_text = self.representations(batch)
        return info_nce(z_tab.float(), z_text.float(), self.temperature, symmetric=self.symmetric)


def align(ctx: RunContext, cfg: CTRLConfig, out: Path) -> None:
    """Stage 1: one engine phase over the training rows (no labels read, no monitor: the last epoch's weights
    stay). The CTR backbone and heads train at ``align_lr``, the PLM at ``align_plm_lr`` (0: frozen). Stores
    the backbone's state dict (the heads and the PLM are not needed afterwards) and the loss history."""
    trainer = ctx.trainer
    plm = ctx.build_plm()
    aligner = CTRLAligner(ctx.build_ctr(), plm, row_tokens(ctx, plm, cfg.max_length), proj_dim=cfg.proj_dim,
                          temperature=cfg.temperature, symmetric=cfg.symmetric).to(ctx.device)
    plm_ids = {id(p) for p in plm.parameters()}
    groups: list[dict[str, Any]] = [{"params": [p for p in aligner.parameters() if id(p) not in plm_ids]}]
    if cfg.align_plm_lr > 0:
        groups.append({"params": list(plm.parameters()), "lr": cfg.align_plm_lr})
    else:
        plm.requires_grad_(False)
    rows = trainer.train_rows(ctx.data, max_samples=cfg.align_max_samples)
    phase = trainer.phase("CTRL alignment", trainer.row_source(ctx.data, rows, cfg.align_batch_size), aligner.loss,
                          groups, model=aligner, epochs=cfg.align_epochs, lr=cfg.align_lr,
                          weight_decay=cfg.align_weight_decay, schedule="constant", warmup=0.0, regularizer=None)
    report = trainer.engine.run(phase)
    torch.save(aligner.ctr.state_dict(), out / "ctr.pt")
    (out / "align.json").write_text(json.dumps({"seconds": report.train_seconds, "rows": len(rows),
                                                "history": [h["train_loss"] for h in report.history]}))


class CTRL:
    """Method object; `run` is called once per RunSpec."""

    def __init__(self, config: CTRLConfig) -> None:
        self.config = config

    def aligned(self, ctx: RunContext) -> tuple[CTRBackbone, dict[str, Any]]:
        """A fresh backbone of the suite's class holding the aligned weights, and the stage's record."""
        key = {"data": ctx.data.fingerprint, "ctr": ctr_ref(ctx), "plm": plm_ref(ctx), "seed": ctx.seed,
               # the phase overrides every other train.* setting and reads no label
               "grad_clip": ctx.trainer.config.grad_clip, "amp": ctx.trainer.config.amp,
               "embedding_init": ctx.trainer.config.embedding_init, **self.config.align_key()}
        stage = ctx.stage("ctrl-align", key, lambda d: align(ctx, self.config, d))
        ctr = ctx.build_ctr()
        ctr.load_state_dict(torch.load(stage / "ctr.pt", map_location="cpu", weights_only=True))
        return ctr, json.loads((stage / "align.json").read_text())

    def run(self, ctx: RunContext) -> Predictions:
        ctr, info = self.aligned(ctx)
        report = ctx.trainer.fit(ctr, ctx.data)  # stage 2: the backbone alone, BCE, train.*
        preds = predictions_of(ctx, ctr, report.train_seconds, report.epochs_run)  # stage time: align_seconds
        preds.extra.update(best_epoch=float(report.best_epoch), align_seconds=float(info["seconds"]),
                           align_final_loss=float(info["history"][-1]))
        return preds


def create(**config: Any) -> CTRL:
    """Factory registered as `ctrl`; its keyword arguments are `CTRLConfig`'s fields."""
    return CTRL(CTRLConfig(**config))


create.__signature__ = inspect.signature(CTRLConfig)  # type: ignore[attr-defined]
