"""What P5 and LlamaRec share: TallRec's `YesNoLLM` with the prompts, the finetuning mode (LoRA or every weight)
and the ``train.*`` defaults chosen by the method.

Everything else is `ctrbench_sllm4ctr.method`'s, unchanged: the run (`YesNoLLM.run`), the training phase over
prompt rows with the validation-AUC monitor (`YesNoLLM._train`), the losses (`batch_loss`: ``lm_response``,
``lm_full``, ``yes_no_bce``), scoring ``p_yes = sigmoid(l_yes - l_no)`` over evaluation batches fixed by the data
(`YesNoLLM._score`), the scored rows (`YesNoLLM._predict`) and the LoRA setup (`YesNoLLM._model`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctrbench.context import RunContext
from ctrbench_sllm4ctr.config import LLMCTRConfig
from ctrbench_sllm4ctr.method import Prompts, YesNoLLM


class PromptedYesNoLLM(YesNoLLM):
    """`YesNoLLM` whose prompts come from `prompts` (a subclass's) and whose PLM is finetuned whole
    (``finetune="full"``) or through LoRA adapters (``"lora"``, `YesNoLLM._model`)."""

    def __init__(self, config: LLMCTRConfig, *, finetune: str, train_defaults: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.finetune = finetune
        self.train_defaults = dict(train_defaults)

    def prompts(self, ctx: RunContext) -> Prompts:
        """Dataset rows -> their prompts (may run cached stages first: LlamaRec's ID model)."""
        raise NotImplementedError

    def _model(self, ctx: RunContext) -> tuple[Any, int]:
        if self.finetune == "lora":
            return super()._model(ctx)
        lm = ctx.build_plm()
        self._check_family(ctx, lm)
        for p in lm.parameters():
            p.requires_grad_(True)
        self._place(ctx, lm)
        return lm, sum(p.numel() for p in lm.parameters())
