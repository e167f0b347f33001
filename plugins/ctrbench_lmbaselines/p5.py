"""`p5`: P5 (Geng et al., "Recommendation as Language Processing (RLP): A Unified Pretrain, Personalized Prompt &
Predict Paradigm (P5)", RecSys 2022) on its CTR-like task: a T5 reads the interaction and its metadata as a
natural-language prompt and answers "Yes" or "No".

- prompt: P5's Yes/No rating question about ``user_<id>`` and ``item_<id>`` after the user's and the item's
  features (`ctrbench_lmbaselines.prompts.p5_template`);
- objective: the seq2seq LM cross-entropy of the target word and ``</s>`` given the prompt (``loss:
  lm_response``: `Seq2SeqLM.lm_loss`, what ``T5ForConditionalGeneration(labels=...)`` computes), every weight of
  the T5 trained (``finetune: full``; ``lora`` as an option);
- prediction: ``p_yes = softmax(l_no, l_yes)[yes]`` from the LM head's scores of the two answer tokens at the first
  decoder step (the decoder reads only its start token) — the probability P5's generation puts on "yes" against
  "no";
- "P5 with a causal LM" (SLLM4CTR ran every LLM baseline on LLaMA-7B): the same method with ``plm:`` a causal LM
  (the answer is then the next token after the prompt), normally with ``finetune: lora``.

The run itself is TallRec's (`ctrbench_lmbaselines.common.PromptedYesNoLLM`, `ctrbench_sllm4ctr.method.YesNoLLM`).
"""

from __future__ import annotations

import inspect
from typing import Any

from ctrbench.context import RunContext
from ctrbench_lmbaselines.common import PromptedYesNoLLM, Prompts
from ctrbench_lmbaselines.config import P5Config
from ctrbench_lmbaselines.prompts import p5_template
from ctrbench_sllm4ctr.prompts import PromptBuilder


class P5(PromptedYesNoLLM):
    """P5 as a CTR predictor; see the module docstring."""

    def __init__(self, config: P5Config) -> None:
        super().__init__(config.llm_config(), finetune=config.finetune, train_defaults=config.train_defaults())
        self.p5_config = config

    def prompts(self, ctx: RunContext) -> Prompts:
        cfg = self.p5_config
        return PromptBuilder(ctx.data, p5_template(ctx.data, cfg.template), cfg.history_items)


def p5(**config: Any) -> P5:
    """Factory registered as `p5`; its keyword arguments are `P5Config`'s fields."""
    return P5(P5Config(**config))


p5.__signature__ = inspect.signature(P5Config)  # type: ignore[attr-defined]
