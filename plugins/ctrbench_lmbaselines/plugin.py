"""Registers the `p5` and `llamarec` methods. The factories import their method (torch, peft) when called; their
signatures are the config dataclasses', from the torch-free config module, so `ctrbench validate` checks the keys."""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.lazy import lazy_method
from ctrbench.protocols import MethodNeeds
from ctrbench_lmbaselines.config import LlamaRecConfig, P5Config

p5 = lazy_method("ctrbench_lmbaselines.p5:p5", P5Config)
llamarec = lazy_method("ctrbench_lmbaselines.llamarec:llamarec", LlamaRecConfig)


# P5 is a T5 (seq2seq_lm) first; "P5 with a causal LM" is the same method on a decoder.
P5_NEEDS = MethodNeeds(plm=("seq2seq_lm", "causal_lm"))
# LlamaRec's ranker is a causal LM (Llama-2); a T5 answers its prompt as well. Stage 1 is the run's ctr: backbone.
LLAMAREC_NEEDS = MethodNeeds(plm=("causal_lm", "seq2seq_lm"), ctr=True)


@hookimpl
def ctrbench_register_methods(register: Register) -> None:
    register("p5", p5,
             summary="T5 (plm:) finetuned whole on P5's Yes/No rating prompt (user_<id>, item_<id>, their features); "
                     "seq2seq LM loss on the answer word; p_yes at the first decoder step; causal LM / LoRA variants",
             paper="Geng et al., Recommendation as Language Processing (RLP): A Unified Pretrain, Personalized "
                   "Prompt & Predict Paradigm (P5), RecSys 2022",
             needs=P5_NEEDS, quick_config={"max_length": 48})
    register("llamarec", llamarec,
             summary="two stages: the ctr: backbone (BCE, cached stage) predicts each row's click probability; a "
                     "LoRA-tuned causal LM reads it in LlamaRec's prompt (history, target) and answers Yes/No",
             paper="Yue et al., LlamaRec: Two-Stage Recommendation using Large Language Models for Ranking, 2023 "
                   "(arXiv:2311.02089); as SLLM4CTR adapts it to CTR",
             needs=LLAMAREC_NEEDS, quick_config={"max_length": 64, "history_items": 3, "id_epochs": 2})
