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
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ctrbench.context import RunContext
from ctrbench.cost import INFER_ROWS, parameter_counts, time_per_batch
from ctrbench.engine import IndexSource, PhaseReport
from ctrbench.errors import PluginError
from ctrbench.results import Predictions
from ctrbench_sllm4ctr.config import TRAIN_DEFAULTS, UNUSED_TRAIN_KEYS, LLMCTRConfig, TallRecConfig
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
    """Finetunes LoRA adapters of the run's causal or seq2seq LM (``plm:``) on Yes/No answers; see the module
    docstring. Training is one engine phase over prompt rows with the validation-AUC monitor, as for every
    method; ``train.*`` sets it, with `TRAIN_DEFAULTS` for the keys a suite leaves out."""

    FAMILIES = ("causal_lm", "seq2seq_lm")
    train_defaults = TRAIN_DEFAULTS

    def __init__(self, config: LLMCTRConfig) -> None:
        self.config = config

    # -- setup --------------------------------------------------------------------------------------
    def _model(self, ctx: RunContext) -> tuple[Any, int]:
        lm = ctx.build_plm()
        family = getattr(lm, "family", type(lm).__name__)
        if family not in self.FAMILIES:
            raise PluginError(f"method needs a causal LM (plm: smollm2-135m, llama-2-7b, ...) or a seq2seq LM "
                              f"(flan-t5-small, ...); '{ctx.spec.plm.name}' is a {family}")
        cfg = self.config
        trainable = lm.add_lora(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.targets_for(family), seed=ctx.seed)
        lm.to(ctx.device)
        if cfg.gradient_checkpointing == "on" or (cfg.gradient_checkpointing == "auto" and ctx.device.type == "cuda"):
            lm.enable_gradient_checkpointing()
        return lm, trainable

    def _check_train_keys(self, ctx: RunContext) -> None:
        unused = [k for k in UNUSED_TRAIN_KEYS if k in ctx.spec.train]
        if unused:
            raise PluginError(f"method '{ctx.spec.method.name}' does not use train.{', train.'.join(unused)} "
                              "(set method.eval_batch_size for the evaluation batch); remove it from the suite")

    # -- run ----------------------------------------------------------------------------------------
    def run(self, ctx: RunContext) -> Predictions:
        cfg = self.config
        self._check_train_keys(ctx)
        torch.manual_seed(ctx.seed)
        lm, trainable = self._model(ctx)
        prompts = PromptBuilder(ctx.data, cfg.template, cfg.history_items)
        log.info("prompt of the first training row: %s", prompts([int(ctx.data.splits["train"][0])])[0])
        report = self._train(ctx, lm, prompts)
        t = time.perf_counter()
        test, _ = self._predict(ctx, lm, prompts, "test")
        infer = time.perf_counter() - t
        valid, _ = self._predict(ctx, lm, prompts, "valid")
        test_rows = np.asarray(ctx.data.splits["test"])[:INFER_ROWS]
        infer_ms = time_per_batch(lambda: self._score(ctx, lm, prompts, test_rows), ctx.device)
        total, trained = parameter_counts(lm)
        return Predictions(
            valid=valid, test=test, n_params=total, trainable_params=trained,
            train_seconds=report.train_seconds, infer_seconds=infer, infer_ms_per_batch=infer_ms,
            epochs=report.epochs_run,
            extra={"trainable_params": float(trainable), "train_steps": float(report.steps),
                   "seconds_per_step": report.train_seconds / max(report.steps, 1),
                   "best_epoch": float(report.best_epoch)},
        )

    def _train(self, ctx: RunContext, lm: Any, prompts: PromptBuilder) -> PhaseReport:
        cfg, trainer = self.config, ctx.trainer
        labels = torch.from_numpy(np.asarray(ctx.data.y, dtype=np.float32))

        def loss(rows: torch.Tensor) -> torch.Tensor:
            ids, mask = lm.tokenize(prompts(rows.numpy()), cfg.max_length)
            return yes_no_loss(cfg, lm(ids, mask), labels[rows].to(ctx.device))[0]

        rows = trainer.train_rows(ctx.data)
        monitor = trainer.valid_monitor(lm, ctx.data, lambda: self._predict(ctx, lm, prompts, "valid")[0],
                                        trainable_only=True, positions=trainer.eval_positions(ctx.data, "valid"))
        phase = trainer.phase(f"{ctx.spec.method.name} finetune ({len(rows)} prompts)",
                              IndexSource(rows, trainer.config.batch_size), loss, lm.trainable_parameters(),
                              model=lm, monitor=monitor)
        return trainer.engine.run(phase)

    @torch.no_grad()
    def _score(self, ctx: RunContext, lm: Any, prompts: PromptBuilder, rows: np.ndarray) -> np.ndarray:
        """p_yes of dataset rows, scored in evaluation batches (the temperature is computed over each)."""
        cfg = self.config
        lm.eval()
        size = cfg.eval_batch_size or ctx.trainer.config.batch_size
        out = np.empty(len(rows), dtype=np.float64)
        for start in range(0, len(rows), size):
            ids, mask = lm.tokenize(prompts(rows[start:start + size]), cfg.max_length)
            with ctx.trainer.autocast():
                res = lm(ids, mask)
            out[start:start + size] = torch.sigmoid(scaled_margin(cfg, res)).double().cpu().numpy()
        return out

    def _predict(self, ctx: RunContext, lm: Any, prompts: PromptBuilder, split: str) -> tuple[np.ndarray, int]:
        """p_yes on the split's scored rows (``train.eval_max_samples``); NaN elsewhere (never scored)."""
        split_rows = np.asarray(ctx.data.splits[split])
        positions = ctx.trainer.eval_positions(ctx.data, split)
        out = np.full(len(split_rows), np.nan, dtype=np.float64)
        out[positions] = self._score(ctx, lm, prompts, split_rows[positions])
        return out, len(positions)


def sllm4ctr(**config: Any) -> YesNoLLM:
    """Factory registered as `sllm4ctr`; its keyword arguments are `LLMCTRConfig`'s fields."""
    return YesNoLLM(LLMCTRConfig(**config))


def tallrec(**config: Any) -> YesNoLLM:
    """Factory registered as `tallrec`; the same knobs with TallRec's defaults (`TallRecConfig`)."""
    return YesNoLLM(TallRecConfig(**config))


sllm4ctr.__signature__ = inspect.signature(LLMCTRConfig)  # type: ignore[attr-defined]
tallrec.__signature__ = inspect.signature(TallRecConfig)  # type: ignore[attr-defined]
