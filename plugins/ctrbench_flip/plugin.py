"""Registers the `flip` method. The factory imports the method (torch, the text layer) when called; its signature
is `FLIPConfig`'s, from the torch-free config module, so `ctrbench validate` checks the keys."""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.lazy import lazy_method
from ctrbench.protocols import MethodNeeds
from ctrbench_flip.config import FLIPConfig

flip = lazy_method("ctrbench_flip.method:flip", FLIPConfig)


@hookimpl
def ctrbench_register_methods(register: Register) -> None:
    register("flip", flip,
             summary="field-level masked modelling across ID and text (masked IDs from the text, masked tokens "
                     "with the ID state) + instance contrastive pretraining; joint finetune of both towers",
             paper="Wang et al., FLIP: Fine-grained Alignment between ID-based Models and Pretrained Language "
                   "Models for CTR Prediction, RecSys 2024 (arXiv:2310.19453)",
             needs=MethodNeeds(plm=("masked_lm",), ctr=True),
             quick_config={"pretrain_epochs": 1, "pretrain_batch_size": 64, "max_length": 32, "projection_dim": 16,
                           "field_proj_size": 8})
