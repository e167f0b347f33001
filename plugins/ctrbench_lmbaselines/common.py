"""What P5 and LlamaRec share: TallRec's `YesNoLLM` with the prompts, the finetuning mode (LoRA or every weight)
and the ``train.*`` defaults chosen by the method.

Everything else is `ctrbench_sllm4ctr.method`'s, unchanged: the training phase over prompt rows with the
validation-AUC monitor (`YesNoLLM._train`), the losses (`batch_loss`: ``lm_response``, ``lm_full``,
``yes_no_bce``), scoring ``p_yes = sigmoid(l_yes - l_no)`` over evaluation batches fixed by the data
(`YesNoLLM._score`), the scored rows (`YesNoLLM._predict`) and the LoRA setup (`YesNoLLM._model`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ctrbench.context import RunContext
from ctrbench.cost import INFER_ROWS, parameter_counts, time_per_batch
from ctrbench.errors import PluginError
from ctrbench.results import Predictions
from ctrbench_sllm4ctr.config import LLMCTRConfig
from ctrbench_sllm4ctr.method import YesNoLLM

log = logging.getLogger(__name__)

Prompts = Callable[[np.ndarray], list[str]]


class PromptedYesNoLLM(YesNoLLM):
    """`YesNoLLM` whose prompts come from `prompts` (a subclass's) and whose PLM is finetuned whole
    (``finetune="full"``) or through LoRA adapters (``"lora"``, `YesNoLLM._model`)."""

    def __init__(self, config: LLMCTRConfig, *, finetune: str, train_defaults: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.finetune = finetune
        self.train_defaults = dict(train_defaults)

    # -- what a method says ------------------------------------------------------------------------
    def prompts(self, ctx: RunContext) -> Prompts:
        """Dataset rows -> their prompts (may run cached stages first: LlamaRec's ID model)."""
        raise NotImplementedError

    def extra_metrics(self, ctx: RunContext) -> dict[str, float]:
        """Run metrics beyond `YesNoLLM`'s (floats); called after prediction."""
        return {}

    # -- the model ---------------------------------------------------------------------------------
    def _model(self, ctx: RunContext) -> tuple[Any, int]:
        if self.finetune == "lora":
            return super()._model(ctx)
        lm = ctx.build_plm()
        self._check_family(ctx, lm)
        for p in lm.parameters():
            p.requires_grad_(True)
        lm.to(ctx.device)
        gc = self.config.gradient_checkpointing
        if gc == "on" or (gc == "auto" and ctx.device.type == "cuda"):
            lm.enable_gradient_checkpointing()
        return lm, sum(p.numel() for p in lm.parameters())

    def _check_family(self, ctx: RunContext, lm: Any) -> None:
        """`YesNoLLM._model`'s checks, for the model it does not build (full finetuning)."""
        family = getattr(lm, "family", type(lm).__name__)
        if family not in self.FAMILIES:
            raise PluginError(f"method needs a causal LM (plm: smollm2-135m, llama-2-7b, ...) or a seq2seq LM "
                              f"(flan-t5-small, ...); '{ctx.spec.plm.name}' is a {family}")
        loss = self.config.loss
        if loss == "lm_full" and family != "causal_lm":
            raise PluginError(f"method '{ctx.spec.method.name}': loss 'lm_full' (the LM loss on prompt + response) "
                              f"needs a causal LM; '{ctx.spec.plm.name}' is a {family} (use loss: lm_response)")
        if loss != "yes_no_bce" and not (hasattr(lm, "lm_loss") and hasattr(lm, "response_ids")):
            raise PluginError(f"method '{ctx.spec.method.name}': loss {loss!r} needs a PLM with lm_loss and "
                              f"response_ids (ctrbench_plm.yes_no.YesNoLM); '{ctx.spec.plm.name}' has none")

    # -- run ---------------------------------------------------------------------------------------
    def run(self, ctx: RunContext) -> Predictions:
        """`YesNoLLM.run` with the method's prompts: finetune on the training rows' prompts, then p_yes on the
        scored validation and test rows."""
        self._check_train_keys(ctx)
        prompts = self.prompts(ctx)
        torch.manual_seed(ctx.seed)
        lm, trainable = self._model(ctx)
        log.info("prompt of the first training row: %s", prompts(np.asarray(ctx.data.splits["train"][:1]))[0])
        report, (valid, _) = self._train(ctx, lm, prompts)
        t = time.perf_counter()
        test, _ = self._predict(ctx, lm, prompts, "test")
        infer = time.perf_counter() - t
        test_rows = np.asarray(ctx.data.splits["test"])[:INFER_ROWS]
        infer_ms = time_per_batch(lambda: self._score(ctx, lm, prompts, test_rows), ctx.device, warm=True)
        total, trained = parameter_counts(lm)
        extra = {"trainable_params": float(trainable), "train_steps": float(report.steps),
                 "seconds_per_step": report.train_seconds / max(report.steps, 1),
                 "best_epoch": float(report.best_epoch), **self.extra_metrics(ctx)}
        return Predictions(valid=valid, test=test, n_params=total, trainable_params=trained,
                           train_seconds=report.train_seconds, infer_seconds=infer, infer_ms_per_batch=infer_ms,
                           epochs=report.epochs_run, extra=extra)
