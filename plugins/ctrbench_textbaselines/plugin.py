"""Registers the language-model baselines `ctr-bert`, `ptab` and `ctrl`.

Each factory imports its method module (torch, transformers, the text layer) only when called; its signature is
its torch-free config dataclass's, so `ctrbench list`/`validate` check the keys without importing torch.
"""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.lazy import lazy_method
from ctrbench.protocols import MethodNeeds
from ctrbench_textbaselines.config import CTRBertConfig, CTRLConfig, PTabConfig

ctr_bert = lazy_method("ctrbench_textbaselines.ctr_bert:create", CTRBertConfig)
ptab = lazy_method("ctrbench_textbaselines.ptab:create", PTabConfig)
ctrl = lazy_method("ctrbench_textbaselines.ctrl:create", CTRLConfig)


@hookimpl
def ctrbench_register_methods(register: Register) -> None:
    register("ctr-bert", ctr_bert,
             summary="two BERT towers (user text, item text) late-fused with the CTR backbone's q by an MLP; "
                     "optional distillation from a cross-encoder teacher",
             paper="Muhamed et al., CTR-BERT: Cost-effective knowledge distillation for billion-parameter "
                   "teacher models, NeurIPS 2021 ENLSP workshop",
             needs=MethodNeeds(plm=("masked_lm",), ctr=True, item_text=True),
             quick_config={"max_length": 16, "fusion_hidden": 16})
    register("ptab", ptab,
             summary="\"field: value\" row texts; masked-language fine-tuning (cached), then classification "
                     "fine-tuning on [CLS]",
             paper="Liu et al., PTab: Using the Pre-trained Language Model for Modeling Tabular Data, 2022 "
                   "(arXiv:2209.08060)",
             needs=MethodNeeds(plm=("masked_lm",)),
             quick_config={"max_length": 24, "pretrain_epochs": 1, "pretrain_batch_size": 64, "head_hidden": 16})
    register("ctrl", ctrl,
             summary="InfoNCE alignment of the CTR backbone with the PLM on each sample's text (cached), then "
                     "the backbone alone is finetuned and served",
             paper="Li et al., CTRL: Connect Collaborative and Language Model for CTR Prediction, 2023 "
                   "(arXiv:2306.02841)",
             needs=MethodNeeds(plm=("masked_lm",), ctr=True),
             quick_config={"max_length": 24, "align_epochs": 1, "align_batch_size": 64, "proj_dim": 16})
