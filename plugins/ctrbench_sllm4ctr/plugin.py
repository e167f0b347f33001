"""Registers the `tallrec` and `sllm4ctr` methods."""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.protocols import MethodNeeds
from ctrbench_sllm4ctr.method import sllm4ctr, tallrec

# Any model that answers a prompt with Yes/No: a decoder or a T5-style encoder-decoder. The user history is
# named in the prompt when the data has one; it is not required.
NEEDS = MethodNeeds(plm=("causal_lm", "seq2seq_lm"))
QUICK = {"max_length": 32}  # with the kit's train: 1 epoch, 64 rows


@hookimpl
def ctrbench_register_methods(register: Register) -> None:
    register("tallrec", tallrec,
             summary="LoRA-tuned causal or seq2seq LM (plm:) answering Yes/No to a prompt of the user's features and "
                     "recent history; cross-entropy on p_yes",
             paper="Bao et al., TALLRec: An Effective and Efficient Tuning Framework to Align Large Language Model "
                   "with Recommendation, RecSys 2023",
             needs=NEEDS, quick_config=QUICK)
    register("sllm4ctr", sllm4ctr,
             summary="TallRec + adaptive temperature (Eq. 2) + label-matching loss (Eq. 4), each switchable",
             paper="Self-monitoring LLMs for CTR prediction (SLLM4CTR): adaptive temperature and label matching "
                   "loss; the method as implemented, with its equations: docs/methods/sllm4ctr.md",
             needs=NEEDS, quick_config=QUICK)
