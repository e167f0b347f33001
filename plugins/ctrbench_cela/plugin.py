"""Registers the `cela` method. The factory imports the method (torch, the text layer) when called; its signature
is `CELAConfig`'s, from the torch-free config module, so `ctrbench validate` checks the keys."""

from __future__ import annotations

import inspect
from typing import Any

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.protocols import MethodNeeds
from ctrbench_cela.config import CELAConfig


def cela(**config: Any) -> Any:
    """`ctrbench_cela.method.cela`, imported when first called."""
    from ctrbench_cela.method import cela as create

    return create(**config)


cela.__signature__ = inspect.signature(CELAConfig)  # type: ignore[attr-defined]


@hookimpl
def ctrbench_register_methods(register: Register) -> None:
    register("cela", cela,
             summary="PLM domain-adaptive pretraining (MLM + SimCSE), item-level text-ID alignment, cached item "
                     "text table fused into a new ID model; ROMA and MF2 alternate",
             paper="Wang et al., CELA: Cost-Efficient Language Model Alignment for CTR Prediction, 2024",
             needs=MethodNeeds(plm=("masked_lm",), ctr=True, item_text=True),
             quick_config={"dap_epochs": 1, "roma_epochs": 1, "max_length": 32, "rounds": 1})
