"""Registers the `unisrec` method. The factory imports the method (torch, the text layer) when called; its
signature is `UniSRecConfig`'s, from the torch-free config module, so `ctrbench validate` checks the keys."""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.lazy import lazy_method
from ctrbench.protocols import MethodNeeds
from ctrbench_unisrec.config import UniSRecConfig

unisrec = lazy_method("ctrbench_unisrec.method:unisrec", UniSRecConfig)


@hookimpl
def ctrbench_register_methods(register: Register) -> None:
    register("unisrec", unisrec,
             summary="frozen-PLM item texts through a MoE whitening adaptor and a Transformer over the history; "
                     "contrastive pretraining; the sequence and target-item vectors feed the CTR backbone",
             paper="Hou et al., Towards Universal Sequence Representation Learning for Recommender Systems, KDD 2022 "
                   "(a CTR baseline in CELA, Wang et al. 2024)",
             needs=MethodNeeds(plm=("masked_lm",), ctr=True, history=True, item_text=True),
             quick_config={"hidden_size": 16, "n_heads": 2, "inner_size": 16, "n_exps": 2, "max_length": 16,
                           "pretrain_epochs": 1, "pretrain_batch_size": 64})
