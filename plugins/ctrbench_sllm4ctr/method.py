"""`tallrec` and `sllm4ctr`: a LoRA-tuned causal LM reads a prompt about a user and an item and scores " Yes".

One class serves both: TallRec is SLLM4CTR with the adaptive temperature and the label-matching loss switched off
(and LoRA on q/v only), so the ablation variants ("Base", "w/o label matching", "w/o adaptive temperature") are
one code path with switches, and "T = 1, beta = 0" is TallRec bit for bit.

Per training batch: ``margin = l_yes - l_no`` of the last position; with the temperature, ``margin * T`` (T from
Eq. 2 over the batch); ``L = BCE(sigmoid(margin * T), y) + beta * L_mat(e_L, p_yes)``. Inference uses the same
temperature over each evaluation batch (the paper calibrates test predictions with it as well).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ctrbench.context import RunContext
from ctrbench.errors import PluginError, RunError
from ctrbench.results import Predictions
from ctrbench_sllm4ctr.config import LLMCTRConfig, TallRecConfig
from ctrbench_sllm4ctr.losses import adaptive_temperature, label_matching_loss
from ctrbench_sllm4ctr.prompts import PromptBuilder

log = logging.getLogger(__name__)


def yes_no_loss(cfg: LLMCTRConfig, out: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, p_yes) of one batch — the whole objective of both methods (Eq. 3 + beta * Eq. 4)."""
    margin = scaled_margin(cfg, out)
    loss = F.binary_cross_entropy_with_logits(margin, y)
    p_yes = torch.sigmoid(margin)
    if cfg.uses_matching:
        loss = loss + cfg.beta * label_matching_loss(out.click, p_yes, cfg.volume_alpha, cfg.matching_terms)
    return loss, p_yes


def scaled_margin(cfg: LLMCTRConfig, out: Any) -> torch.Tensor:
    """``l_yes - l_no``, times the adaptive temperature when it is on (softmax(l*T) over two = sigmoid(margin*T))."""
    margin = out.margin
    if cfg.adaptive_temperature:
        margin = margin * adaptive_temperature(out.prompt, out.click, cfg.temperature_scale)
    return margin


class YesNoLLM:
    """Finetunes LoRA adapters of the run's causal LM (``plm:``) on Yes/No answers; see the module docstring."""

    def __init__(self, config: LLMCTRConfig) -> None:
        self.config = config

    # -- setup --------------------------------------------------------------------------------------
    def _model(self, ctx: RunContext) -> tuple[Any, int]:
        lm = ctx.build_plm()
        if getattr(lm, "family", None) != "causal_lm":
            raise PluginError(f"method needs a causal LM (plm: smollm2-135m, llama-2-7b, ...); "
                              f"'{ctx.spec.plm.name}' is a {getattr(lm, 'family', type(lm).__name__)}")
        cfg = self.config
        trainable = lm.add_lora(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets, seed=ctx.seed)
        lm.to(ctx.device)
        if cfg.gradient_checkpointing == "on" or (cfg.gradient_checkpointing == "auto" and ctx.device.type == "cuda"):
            lm.enable_gradient_checkpointing()
        return lm, trainable

    # -- run ----------------------------------------------------------------------------------------
    def run(self, ctx: RunContext) -> Predictions:
        cfg = self.config
        torch.manual_seed(ctx.seed)
        lm, trainable = self._model(ctx)
        prompts = PromptBuilder(ctx.data, cfg.template, cfg.history_items)
        log.info("prompt of the first training row: %s", prompts([int(ctx.data.splits["train"][0])])[0])
        train_seconds, steps = self._train(ctx, lm, prompts)
        t = time.perf_counter()
        test, n_test = self._predict(ctx, lm, prompts, "test")
        infer = time.perf_counter() - t
        valid, _ = self._predict(ctx, lm, prompts, "valid")
        return Predictions(
            valid=valid, test=test,
            n_params=sum(p.numel() for p in lm.parameters()),
            train_seconds=train_seconds, infer_seconds=infer,
            infer_ms_per_batch=1000.0 * infer / max(n_test, 1) * 128,
            epochs=cfg.epochs,
            extra={"trainable_params": float(trainable), "train_steps": float(steps),
                   "seconds_per_step": train_seconds / max(steps, 1)},
        )

    def _train(self, ctx: RunContext, lm: Any, prompts: PromptBuilder) -> tuple[float, int]:
        cfg = self.config
        rows = ctx.trainer.train_rows(ctx.data).numpy()
        labels = np.asarray(ctx.data.y, dtype=np.float32)
        params = lm.trainable_parameters()
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(ctx.seed)
        steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
        ctx.reporter.start(steps_per_epoch * cfg.epochs, f"{ctx.spec.method.name} finetune ({len(rows)} prompts)")
        lm.train()
        step = 0
        t0 = time.perf_counter()
        try:
            for _ in range(cfg.epochs):
                order = rows[torch.randperm(len(rows), generator=gen).numpy()]
                for start in range(0, len(order), cfg.batch_size):
                    batch = order[start:start + cfg.batch_size]
                    ids, mask = lm.tokenize(prompts(batch), cfg.max_length)
                    y = torch.from_numpy(labels[batch]).to(ctx.device)
                    with ctx.trainer.autocast():
                        out = lm(ids, mask)
                    loss, _ = yes_no_loss(cfg, out, y)
                    if not torch.isfinite(loss):
                        raise RunError(f"{ctx.spec.method.name}: non-finite loss ({loss.item()}) at step {step + 1}; "
                                       "lower the learning rate or volume_alpha/beta")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if ctx.trainer.config.grad_clip:
                        torch.nn.utils.clip_grad_norm_(params, ctx.trainer.config.grad_clip)
                    opt.step()
                    step += 1
                    ctx.reporter.advance()
        finally:
            ctx.reporter.finish()
        lm.eval()
        return time.perf_counter() - t0, step

    @torch.no_grad()
    def _predict(self, ctx: RunContext, lm: Any, prompts: PromptBuilder, split: str) -> tuple[np.ndarray, int]:
        """p_yes on the split's scored rows (``train.eval_max_samples``); NaN elsewhere (never scored)."""
        cfg = self.config
        split_rows = np.asarray(ctx.data.splits[split])
        positions = ctx.trainer.eval_positions(ctx.data, split)
        out = np.full(len(split_rows), np.nan, dtype=np.float64)
        size = cfg.eval_batch_size or cfg.batch_size
        for start in range(0, len(positions), size):
            pos = positions[start:start + size]
            ids, mask = lm.tokenize(prompts(split_rows[pos]), cfg.max_length)
            with ctx.trainer.autocast():
                res = lm(ids, mask)
            out[pos] = torch.sigmoid(scaled_margin(cfg, res)).double().cpu().numpy()
        return out, len(positions)


def sllm4ctr(**config: Any) -> YesNoLLM:
    """Factory registered as `sllm4ctr`; its keyword arguments are `LLMCTRConfig`'s fields."""
    return YesNoLLM(LLMCTRConfig(**config))


def tallrec(**config: Any) -> YesNoLLM:
    """Factory registered as `tallrec`; the same knobs with TallRec's defaults (`TallRecConfig`)."""
    return YesNoLLM(TallRecConfig(**config))


sllm4ctr.__signature__ = inspect.signature(LLMCTRConfig)  # type: ignore[attr-defined]
tallrec.__signature__ = inspect.signature(TallRecConfig)  # type: ignore[attr-defined]
