"""Registers the `cela` method. The factory imports the method (torch, the text layer) when called; its signature
is `CELAConfig`'s, from the torch-free config module, so `ctrbench validate` checks the keys."""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.lazy import lazy_method
from ctrbench.protocols import MethodNeeds
from ctrbench_cela.config import CELAConfig

cela = lazy_method("ctrbench_cela.method:cela", CELAConfig)


@hookimpl
def ctrbench_register_methods(register: Register) -> None:
    register("cela", cela,
             summary="PLM domain-adaptive pretraining (MLM, or CLM for a causal LM with LoRA; + SimCSE), item-level "
                     "text-ID alignment, cached item text table fused into a new ID model; ROMA and MF2 alternate",
             paper="Wang et al., CELA: Cost-Efficient Language Model Alignment for CTR Prediction, 2024",
             needs=MethodNeeds(plm=("masked_lm", "causal_lm"), ctr=True, item_text=True),
             quick_config={"dap_epochs": 1, "roma_epochs": 1, "max_length": 32, "rounds": 1})
