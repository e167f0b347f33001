"""`tallrec` and `sllm4ctr`: a LoRA-tuned causal (or seq2seq) LM reads a prompt about a user and an item and
scores " Yes".

One class serves both, so the ablation variants ("Base", "w/o label matching", "w/o adaptive temperature") are one
code path with switches. What differs between the two methods is configuration (`TallRecConfig`, `LLMCTRConfig`):
the prompt (``template``), the objective (``loss``), the LoRA targets and dropout, the two SLLM4CTR additions and
the ``train.*`` defaults. With the same prompt, loss and LoRA, ``sllm4ctr`` with ``adaptive_temperature: false``
and ``beta: 0`` is ``tallrec`` bit for bit.

Per training batch:

- ``loss: yes_no_bce`` (SLLM4CTR Eq. 3): ``margin = l_yes - l_no`` at the answer position, times T (Eq. 2, over
  the batch) when the temperature is on; ``L = BCE(sigmoid(margin), y)``;
- ``loss: lm_response`` / ``lm_full`` (TALLRec): the causal-LM cross-entropy on the response tokens (answer, EOS)
  / on the whole prompt + response (`CausalLM.lm_loss`);
- plus ``beta * L_mat(e_L, p_yes)`` (Eq. 4) when label matching is on, ``p_yes`` from the same forward.

Prediction is always ``p_yes = sigmoid(margin)`` (times T when the temperature is on) from the two answer
scores. The temperature is computed over evaluation batches too (the paper calibrates test predictions with it);
those batches are fixed by the data: the scored rows sorted by row index and cut into ``eval_batch_size`` chunks,
so a row's prediction does not depend on the order rows are passed in. The AUC without T (same forward) is
reported next to it (``*_auc_no_temperature``).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ctrbench.context import RunContext
from ctrbench.cost import INFER_ROWS, parameter_counts, time_per_batch
from ctrbench.engine import IndexSource, PhaseReport
from ctrbench.errors import PluginError
from ctrbench.results import Predictions
from ctrbench.stats import auc, logloss
from ctrbench_sllm4ctr.config import TRAIN_DEFAULTS, UNUSED_TRAIN_KEYS, LLMCTRConfig, TallRecConfig
from ctrbench_sllm4ctr.losses import adaptive_temperature, label_matching_loss
from ctrbench_sllm4ctr.prompts import PromptBuilder

Prompts = Callable[[np.ndarray], list[str]]

log = logging.getLogger(__name__)

LM_SCOPES = {"lm_response": "response", "lm_full": "full"}


def yes_no_loss(cfg: LLMCTRConfig, out: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, p_yes) of one batch with the two-way objective (Eq. 3 + beta * Eq. 4)."""
    margin = scaled_margin(cfg, out)
    loss = F.binary_cross_entropy_with_logits(margin, y)
    p_yes = torch.sigmoid(margin)
    return loss + matching_term(cfg, out, p_yes), p_yes


def matching_term(cfg: LLMCTRConfig, out: Any, p_yes: torch.Tensor) -> torch.Tensor | float:
    """``beta * L_mat`` (Eq. 4) when label matching is on, else 0."""
    if not cfg.uses_matching:
        return 0.0
    return cfg.beta * label_matching_loss(out.click, p_yes, cfg.volume_alpha, cfg.matching_terms,
                                          normalize=cfg.normalize_embeddings)


def scaled_margin(cfg: LLMCTRConfig, out: Any) -> torch.Tensor:
    """``l_yes - l_no``, times the adaptive temperature when it is on (softmax(l*T) over two = sigmoid(margin*T))."""
    margin = out.margin
    if cfg.adaptive_temperature:
        margin = margin * adaptive_temperature(out.prompt, out.click, cfg.temperature_scale)
    return margin


def batch_loss(cfg: LLMCTRConfig, lm: Any, ids: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The training loss of one batch of tokenized prompts and their labels, for ``cfg.loss``."""
    if cfg.loss == "yes_no_bce":
        return yes_no_loss(cfg, lm(ids, mask), y)[0]
    loss, out = lm.lm_loss(ids, mask, lm.response_ids(y), LM_SCOPES[cfg.loss])
    return loss + matching_term(cfg, out, torch.sigmoid(out.margin))


def evaluation_batches(rows: np.ndarray, size: int) -> list[np.ndarray]:
    """Positions into ``rows`` grouped into evaluation batches fixed by the data: ``rows`` sorted by row index,
    cut into chunks of ``size``. Which rows share a batch (and so a temperature's softmax) does not depend on the
    order ``rows`` come in."""
    order = np.argsort(np.asarray(rows), kind="stable")
    return [order[start:start + size] for start in range(0, len(order), size)]


class YesNoLLM:
    """Finetunes LoRA adapters of the run's causal or seq2seq LM (``plm:``) on Yes/No answers; see the module
    docstring. Training is one engine phase over prompt rows with the validation-AUC monitor, as for every
    method; ``train.*`` sets it, with ``train_defaults`` (the paper's values) for the keys a suite leaves out."""

    FAMILIES = ("causal_lm", "seq2seq_lm")
    train_defaults = TRAIN_DEFAULTS

    def __init__(self, config: LLMCTRConfig) -> None:
        self.config = config
        self.train_defaults = config.train_defaults()

    # -- what a subclass may change (the LM baselines: `ctrbench_lmbaselines.common`) -----------------
    def prompts(self, ctx: RunContext) -> Prompts:
        """Dataset rows -> their prompts: the configured template. Called before the run's seed is set, so a
        subclass may run cached stages here (LlamaRec's ID model) without moving the LM's random draws."""
        return PromptBuilder(ctx.data, self.config.template, self.config.history_items)

    def extra_metrics(self, ctx: RunContext) -> dict[str, float]:
        """Run metrics beyond the common ones (floats); called after prediction."""
        return {}

    # -- setup --------------------------------------------------------------------------------------
    def _model(self, ctx: RunContext) -> tuple[Any, int]:
        lm = ctx.build_plm()
        self._check_family(ctx, lm)
        cfg = self.config
        trainable = lm.add_lora(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.targets_for(lm.family),
                                seed=ctx.seed)
        self._place(ctx, lm)
        return lm, trainable

    def _check_family(self, ctx: RunContext, lm: Any) -> None:
        """The run's PLM is an LM this method can score and train with the configured loss."""
        family = getattr(lm, "family", type(lm).__name__)
        if family not in self.FAMILIES:
            raise PluginError(f"method needs a causal LM (plm: smollm2-135m, llama-2-7b, ...) or a seq2seq LM "
                              f"(flan-t5-small, ...); '{ctx.spec.plm.name}' is a {family}")
        cfg = self.config
        if cfg.loss == "lm_full" and family != "causal_lm":
            raise PluginError(f"method '{ctx.spec.method.name}': loss 'lm_full' (the LM loss on prompt + response) "
                              f"needs a causal LM; '{ctx.spec.plm.name}' is a {family}, which does not predict its "
                              "input (use loss: lm_response, its decoder's loss on the answer)")
        if cfg.loss != "yes_no_bce" and not (hasattr(lm, "lm_loss") and hasattr(lm, "response_ids")):
            raise PluginError(f"method '{ctx.spec.method.name}': loss {cfg.loss!r} needs a PLM with lm_loss and "
                              f"response_ids (ctrbench_plm.yes_no.YesNoLM); '{ctx.spec.plm.name}' has none "
                              "(use loss: yes_no_bce)")

    def _place(self, ctx: RunContext, lm: Any) -> None:
        """Onto the run's device, with gradient checkpointing where configured (``auto``: on a GPU)."""
        lm.to(ctx.device)
        gc = self.config.gradient_checkpointing
        if gc == "on" or (gc == "auto" and ctx.device.type == "cuda"):
            lm.enable_gradient_checkpointing()

    def _check_train_keys(self, ctx: RunContext) -> None:
        unused = [k for k in UNUSED_TRAIN_KEYS if k in ctx.spec.train]
        if unused:
            raise PluginError(f"method '{ctx.spec.method.name}' does not use train.{', train.'.join(unused)} "
                              "(set method.eval_batch_size for the evaluation batch); remove it from the suite")

    # -- run ----------------------------------------------------------------------------------------
    def run(self, ctx: RunContext) -> Predictions:
        """Finetune on the training rows' prompts, then p_yes on the scored validation and test rows."""
        self._check_train_keys(ctx)
        prompts = self.prompts(ctx)
        torch.manual_seed(ctx.seed)
        lm, trainable = self._model(ctx)
        log.info("prompt of the first training row: %s", prompts(np.asarray(ctx.data.splits["train"][:1]))[0])
        report, (valid, valid_plain) = self._train(ctx, lm, prompts)
        t = time.perf_counter()
        test, test_plain = self._predict(ctx, lm, prompts, "test")
        infer = time.perf_counter() - t
        test_rows = np.asarray(ctx.data.splits["test"])[:INFER_ROWS]
        infer_ms = time_per_batch(lambda: self._score(ctx, lm, prompts, test_rows), ctx.device, warm=True)
        total, trained = parameter_counts(lm)
        extra = {"trainable_params": float(trainable), "train_steps": float(report.steps),
                 "seconds_per_step": report.train_seconds / max(report.steps, 1),
                 "best_epoch": float(report.best_epoch)}
        if self.config.adaptive_temperature:
            extra.update(self._plain_metrics(ctx, {"valid": valid_plain, "test": test_plain}))
        extra.update(self.extra_metrics(ctx))
        return Predictions(
            valid=valid, test=test, n_params=total, trainable_params=trained,
            train_seconds=report.train_seconds, infer_seconds=infer, infer_ms_per_batch=infer_ms,
            epochs=report.epochs_run, extra=extra,
        )

    def _train(self, ctx: RunContext, lm: Any, prompts: Prompts) -> tuple[PhaseReport, tuple[np.ndarray,
                                                                                                  np.ndarray]]:
        """The finetuning phase, and the validation ``(p_yes, p_yes without T)`` of the restored best epoch.

        Those are the predictions the monitor scored at that epoch (one validation per epoch, in order), reused:
        the restored weights are that epoch's, and scoring is deterministic, so scoring the split again (a few
        minutes for an LLM on a CPU) would give the same numbers (tests/test_sllm4ctr.py checks it)."""
        cfg, trainer = self.config, ctx.trainer
        labels = torch.from_numpy(np.asarray(ctx.data.y, dtype=np.float32))

        def loss(rows: torch.Tensor) -> torch.Tensor:
            ids, mask = lm.tokenize(prompts(rows.numpy()), cfg.max_length)
            return batch_loss(cfg, lm, ids, mask, labels[rows].to(ctx.device))

        per_epoch: list[tuple[np.ndarray, np.ndarray]] = []

        def validate() -> np.ndarray:
            per_epoch.append(self._predict(ctx, lm, prompts, "valid"))
            return per_epoch[-1][0]

        rows = trainer.train_rows(ctx.data)
        monitor = trainer.valid_monitor(lm, ctx.data, validate, trainable_only=True,
                                        positions=trainer.eval_positions(ctx.data, "valid"))
        phase = trainer.phase(f"{ctx.spec.method.name} finetune ({len(rows)} prompts)",
                              IndexSource(rows, trainer.config.batch_size), loss, lm.trainable_parameters(),
                              model=lm, monitor=monitor)
        report = trainer.engine.run(phase)
        if len(per_epoch) == report.epochs_run and 1 <= report.best_epoch <= len(per_epoch):
            return report, per_epoch[report.best_epoch - 1]
        return report, self._predict(ctx, lm, prompts, "valid")

    @torch.no_grad()
    def _score(self, ctx: RunContext, lm: Any, prompts: Prompts,
               rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(p_yes, p_yes without T)`` of dataset rows from one forward pass per evaluation batch
        (`evaluation_batches`: fixed by the data, the temperature is computed over each); equal when the
        temperature is off."""
        cfg = self.config
        lm.eval()
        rows = np.asarray(rows, dtype=np.int64)
        size = cfg.eval_batch_size or ctx.trainer.config.batch_size
        out = np.empty(len(rows), dtype=np.float64)
        plain = np.empty(len(rows), dtype=np.float64)
        for batch in evaluation_batches(rows, size):
            ids, mask = lm.tokenize(prompts(rows[batch]), cfg.max_length)
            with ctx.trainer.autocast():
                res = lm(ids, mask)
            out[batch] = torch.sigmoid(scaled_margin(cfg, res)).double().cpu().numpy()
            plain[batch] = torch.sigmoid(res.margin).double().cpu().numpy()
        return out, plain

    def _predict(self, ctx: RunContext, lm: Any, prompts: Prompts, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(p_yes, p_yes without T)`` on the split's scored rows (``train.eval_max_samples``); NaN elsewhere."""
        split_rows = np.asarray(ctx.data.splits[split])
        positions = ctx.trainer.eval_positions(ctx.data, split)
        out = np.full(len(split_rows), np.nan, dtype=np.float64)
        plain = out.copy()
        out[positions], plain[positions] = self._score(ctx, lm, prompts, split_rows[positions])
        return out, plain

    @staticmethod
    def _plain_metrics(ctx: RunContext, preds: dict[str, np.ndarray]) -> dict[str, float]:
        """AUC and Logloss of the predictions without the temperature, on the same scored rows."""
        metrics = {}
        for split, p in preds.items():
            positions = ctx.trainer.eval_positions(ctx.data, split)
            y = np.asarray(ctx.data.y[ctx.data.splits[split]], dtype=np.float64)[positions]
            metrics[f"{split}_auc_no_temperature"] = auc(y, p[positions])
            metrics[f"{split}_logloss_no_temperature"] = logloss(y, p[positions])
        return metrics


def sllm4ctr(**config: Any) -> YesNoLLM:
    """Factory registered as `sllm4ctr`; its keyword arguments are `LLMCTRConfig`'s fields."""
    return YesNoLLM(LLMCTRConfig(**config))


def tallrec(**config: Any) -> YesNoLLM:
    """Factory registered as `tallrec`; the same knobs with TallRec's defaults (`TallRecConfig`)."""
    return YesNoLLM(TallRecConfig(**config))


sllm4ctr.__signature__ = inspect.signature(LLMCTRConfig)  # type: ignore[attr-defined]
tallrec.__signature__ = inspect.signature(TallRecConfig)  # type: ignore[attr-defined]
