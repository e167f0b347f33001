"""Stage 1 of CELA (Wang et al., §4.1): domain-adaptive pretraining of the PLM on the item-text corpus.

    L_MLM    = −Σ_i Σ_m log P(x_m | x_\\m)                              (Eq. 4; mean over masked tokens here)
    L_SimCSE = −Σ_i log exp(cos(h_i, h'_i)/τ₁) / Σ_j exp(cos(h_i, h'_j)/τ₁)   (Eq. 5; mean over the batch)
    L_DAP    = L_MLM + α·L_SimCSE                                       (Eq. 6, ``dap_weighting="paper"``)
             = 0.1·L_MLM + L_SimCSE                                     (the authors' code, ``"authors_code"``)

The corpus is one text per item; h, h' are the [CLS] states of the same uncorrupted text under two dropout
masks (the authors' collator keeps the original ids for SimCSE and corrupts a copy for the MLM). The ID model of
Eq. 7 is trained by `ctrbench.trainer.Trainer.fit` in `method.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctrbench.context import RunContext
from ctrbench.engine import IndexSource
from ctrbench.text import IGNORE, TokenTable, mask_tokens, maskable, simcse_loss
from ctrbench_cela.config import CELAConfig
from ctrbench_cela.encoder import is_causal, state, tunable_parameters

AUTHORS_MLM_WEIGHT = 0.1


def mlm_loss(plm: Any, ids: torch.Tensor, mask: torch.Tensor, gen: torch.Generator,
             mask_prob: float) -> torch.Tensor | None:
    """Eq. 4 on one batch: BERT's 80/10/10 corruption, cross-entropy on the selected tokens (None: none chosen).
    A causal LM (`encoder.CausalTextEncoder`) takes its own pretraining loss instead, as the paper does for OPT."""
    if is_causal(plm):
        return plm.lm_loss(ids, mask)
    candidates = maskable(ids, mask, plm.tokenizer.all_special_ids)
    corrupted, labels = mask_tokens(ids, candidates, mask_token_id=plm.mask_token_id, vocab_size=plm.vocab_size,
                                    mask_prob=mask_prob, generator=gen)
    selected = labels != IGNORE
    if not selected.any():
        return None
    hidden = plm.encode(corrupted, mask)
    logits = plm.mlm_head(hidden[selected])  # only the selected positions reach the vocabulary projection
    return nn.functional.cross_entropy(logits.float(), labels[selected])


def sentence(plm: Any) -> Any:
    """The sentence encoder of SimCSE and ROMA: the PLM's pooled final state ([CLS]; a causal LM's mean)."""
    return lambda ids, mask: plm.pooled(plm.encode(ids, mask), mask)


def dap_loss(plm: Any, ids: torch.Tensor, mask: torch.Tensor, cfg: CELAConfig,
             gen: torch.Generator) -> torch.Tensor | None:
    """Eq. 6 with the weighting of ``cfg.dap_weighting``; a term switched off (w/o MLM / w/o SimCSE) is left out."""
    w_mlm, w_cse = (1.0, cfg.alpha) if cfg.dap_weighting == "paper" else (AUTHORS_MLM_WEIGHT, 1.0)
    total: torch.Tensor | None = None
    if cfg.mlm:
        term = mlm_loss(plm, ids, mask, gen, cfg.mask_prob)
        if term is not None:
            total = w_mlm * term
    if cfg.simcse and len(ids) > 1:  # one text has no in-batch negative
        term = w_cse * simcse_loss(sentence(plm), ids, mask, cfg.tau1)
        total = term if total is None else total + term
    return total


def pretrain(ctx: RunContext, plm: Any, tokens: TokenTable, cfg: CELAConfig, out_dir: Path) -> None:
    """One engine phase over the item texts (items 1..V−1 in shuffled batches of ``dap_batch_size``); saves the
    PLM's weights and the loss history. Only the PLM trains; no validation monitor (pretraining has no AUC)."""
    plm.to(ctx.device)
    gen = torch.Generator().manual_seed(ctx.seed + 1)

    def loss(idx: torch.Tensor) -> torch.Tensor | None:
        ids, mask = tokens.gather(idx, ctx.device, trim=True)
        return dap_loss(plm, ids, mask, cfg, gen)

    source = IndexSource(torch.arange(1, len(tokens)), cfg.dap_batch_size)
    phase = ctx.trainer.phase("CELA-DAP", source, loss, tunable_parameters(plm),
                              model=plm, epochs=cfg.dap_epochs, lr=cfg.dap_lr, weight_decay=0.0,
                              schedule=cfg.dap_schedule, warmup=0.0, regularizer=None)
    report = ctx.trainer.engine.run(phase)
    plm.eval()
    torch.save(state(plm), out_dir / "plm.pt")
    (out_dir / "dap.json").write_text(json.dumps({"seconds": report.train_seconds, "steps": report.steps,
                                                  "history": report.history}, indent=2))
