"""Pieces the three baselines share: the prediction head, stage keys, parameter groups, row tokens, row logits."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from ctrbench.context import RunContext
from ctrbench.models.base import Batch
from ctrbench.text import TokenTable, token_cache_key


class PredictionHead(nn.Module):
    """x [B, D] → logit [B]: Linear(D, hidden) → tanh → dropout → Linear(hidden, 1).

    The head the FLIP authors' reproductions of CTR-BERT and PTab put on the [CLS] state(s) (``Prediction_Layer``
    in their ``ctr_bert.py``/``ptab.py``); neither paper gives its own.
    """

    def __init__(self, in_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.projection = nn.Linear(in_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.tanh(self.projection(x)))).squeeze(-1)



class TextClassifier(nn.Module):
    """A PLM over each row's tokenized text with `PredictionHead` on its pooled ([CLS]) state: PTab's classifier
    and CTR-BERT's distillation teacher (a cross-encoder over the whole row) are this one model."""

    def __init__(self, plm: Any, tokens: TokenTable, *, hidden: int, dropout: float) -> None:
        super().__init__()
        self.plm, self.tokens = plm, tokens
        self.head = PredictionHead(plm.hidden_size, hidden, dropout)

    def forward(self, batch: Batch) -> torch.Tensor:
        ids, mask = self.tokens.gather(batch.idx, self.head.fc.weight.device, trim=True)
        return self.head(self.plm.pooled(self.plm.encode(ids, mask), mask))

def plm_ref(ctx: RunContext) -> list[Any] | None:
    """The suite's PLM (name and config) for stage keys."""
    return [ctx.spec.plm.name, ctx.spec.plm.config] if ctx.spec.plm else None


def ctr_ref(ctx: RunContext) -> list[Any] | None:
    return [ctx.spec.ctr.name, ctx.spec.ctr.config] if ctx.spec.ctr else None


def train_key(ctx: RunContext, *overridden: str) -> dict[str, Any]:
    """The run's ``train.*`` settings a stage's phases take (all but the ``overridden`` ones and the
    evaluation batch size, which changes no result): part of the stage key, so no stale stage is reused."""
    return {k: v for k, v in asdict(ctx.trainer.config).items() if k not in (*overridden, "eval_batch_size")}


def split_groups(model: nn.Module, plms: Iterable[nn.Module], plm_lr: float) -> list[dict[str, Any]]:
    """AdamW groups: everything but the PLM(s) at the phase's lr, the PLM(s) at ``plm_lr``; ``plm_lr`` = 0
    freezes them (``requires_grad`` off, so no gradient is computed for them at all)."""
    plm_params = {id(p): p for m in plms for p in m.parameters()}
    rest = [p for p in model.parameters() if id(p) not in plm_params]
    if plm_lr > 0:
        return [{"params": rest}, {"params": list(plm_params.values()), "lr": plm_lr}]
    for p in plm_params.values():
        p.requires_grad_(False)
    return [{"params": rest}]


def row_tokens(ctx: RunContext, plm: Any, max_length: int, fields: list[str] | None = None) -> TokenTable:
    """Every row's "label is value." text (over ``fields``, default all), tokenized once: a cached stage.

    With ``fields=None`` the key and stage name are ClickPrompt's, so CTRL and ClickPrompt share one table.
    """
    key = token_cache_key(ctx.data, plm, texts="row", max_length=max_length, fields=fields)
    folder = ctx.stage("text-tokens", key,
                       lambda d: TokenTable.for_rows(ctx.data, plm, max_length, fields=fields, key=key).save(d))
    return TokenTable.load(folder, key=key)


@torch.no_grad()
def row_logits(ctx: RunContext, model: nn.Module, rows: torch.Tensor,
               forward: Callable[[nn.Module, Batch], torch.Tensor] | None = None) -> np.ndarray:
    """Logits of ``model`` on arbitrary dataset rows (``Trainer.predict`` scores whole splits only), in float32
    like ``Trainer.predict``."""
    trainer = ctx.trainer
    model.eval()
    outs = []
    for batch in trainer.batches(trainer.device_data(ctx.data), rows, trainer.config.eval_batch_size):
        outs.append((forward(model, batch) if forward else model(batch)).float().cpu())
    return torch.cat(outs).numpy() if outs else np.zeros(0, np.float32)
