"""Registers the `clickprompt` method. The factory imports the method (torch, the text layer) when called; its
signature is `ClickPromptConfig`'s, from the torch-free config module, so `ctrbench validate` checks the keys."""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.lazy import lazy_method
from ctrbench.protocols import MethodNeeds
from ctrbench_clickprompt.config import ClickPromptConfig

clickprompt = lazy_method("ctrbench_clickprompt.method:clickprompt", ClickPromptConfig)


@hookimpl
def ctrbench_register_methods(register: Register) -> None:
    register("clickprompt", clickprompt,
             summary="CTR model generates layer-wise soft prompts for a PLM; PA-MLM pretraining; finetune "
                     "with or without the PLM",
             paper="Lin et al., ClickPrompt: CTR Models are Strong Prompt Generators for Adapting Language "
                   "Models to CTR Prediction, WWW 2024 (arXiv:2310.09234)",
             needs=MethodNeeds(plm=("masked_lm",), ctr=True),
             quick_config={"pretrain_epochs": 1, "pretrain_batch_size": 256, "max_length": 16, "num_prompts": 1})
