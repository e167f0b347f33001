"""Registers the `tallrec` and `sllm4ctr` methods."""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench_sllm4ctr.method import sllm4ctr, tallrec


@hookimpl
def ctrbench_register_methods(register: Register) -> None:
    register("tallrec", tallrec,
             summary="LoRA-tuned causal LM (plm:) answering ' Yes'/' No' to a prompt of the user's features and "
                     "recent history; cross-entropy on p_yes",
             paper="Bao et al., TALLRec: An Effective and Efficient Tuning Framework to Align Large Language Model "
                   "with Recommendation, RecSys 2023")
    register("sllm4ctr", sllm4ctr,
             summary="TallRec + adaptive temperature (Eq. 2) + label-matching loss (Eq. 4), each switchable",
             paper="Self-monitoring LLMs for CTR prediction (SLLM4CTR): adaptive temperature and label matching "
                   "loss; the method as implemented, with its equations: docs/methods/sllm4ctr.md")
