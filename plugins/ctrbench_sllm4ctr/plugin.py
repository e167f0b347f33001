"""Registers the `tallrec` and `sllm4ctr` methods. The factories import the method (torch, peft) when called;
their signatures are the config dataclasses', from the torch-free config module, so `ctrbench validate` checks
the keys."""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.lazy import lazy_method
from ctrbench.protocols import MethodNeeds
from ctrbench_sllm4ctr.config import LLMCTRConfig, TallRecConfig

sllm4ctr = lazy_method("ctrbench_sllm4ctr.method:sllm4ctr", LLMCTRConfig)
tallrec = lazy_method("ctrbench_sllm4ctr.method:tallrec", TallRecConfig)


# Any model that answers a prompt with Yes/No: a decoder or a T5-style encoder-decoder. The user history is
# named in the prompt when the data has one; it is not required.
NEEDS = MethodNeeds(plm=("causal_lm", "seq2seq_lm"))
QUICK = {"max_length": 32}  # with the kit's train: 1 epoch, 64 rows


@hookimpl
def ctrbench_register_methods(register: Register) -> None:
    register("tallrec", tallrec,
             summary="LoRA-tuned causal or seq2seq LM (plm:) answering TALLRec's Alpaca prompt (last 10 interactions "
                     "as liked/disliked titles); causal-LM loss on the response",
             paper="Bao et al., TALLRec: An Effective and Efficient Tuning Framework to Align Large Language Model "
                   "with Recommendation, RecSys 2023",
             needs=NEEDS, quick_config=QUICK)
    register("sllm4ctr", sllm4ctr,
             summary="TallRec + adaptive temperature (Eq. 2) + label-matching loss (Eq. 4), each switchable",
             paper="Anonymous authors, Self-Monitoring Large Language Models for Click-Through Rate Prediction "
                   "(SLLM4CTR), manuscript under double-blind review (no venue or preprint id in the copy we have)",
             needs=NEEDS, quick_config=QUICK)
