"""GPU check: how close ctrbench's training steps come to the device's own matmul rate (issue 18, item 4).

    python benchmarks/gpu_check.py [--device cuda] [--tiny] [--out results.json] [--skip NAME ...]

One process, one device, sections run in this order (about 1-3 minutes on one H200; the budget is 8):

``limit``
    The device's measured matmul rate: FLOP/s (``2 n^3`` per product) of a square ``n x n`` matmul, bf16 on CUDA
    (fp32 on the CPU), best of 3 repeats for n in 4096, 8192, 16384 (64, 128, 256 with ``--tiny``); the limit is
    the best size's rate. Every fraction below is "achieved FLOP/s / this limit", **not** the vendor's peak.
``clickprompt_pamlm`` / ``clickprompt_finetune``
    ClickPrompt built as the method builds it (`ClickPromptModel`: a DNN backbone, the prompt generator, a
    `MaskedLM` over a roberta-base-sized ``RobertaForMaskedLM`` built from its config with random weights — hidden
    768, 12 layers, 12 heads, FFN 3072, vocabulary 50,265, no hub), a `TokenTable` of synthetic token ids (every
    text 128 tokens: [CLS] ids [SEP]), layer-wise prompts (K = 5). PA-MLM steps run the method's loss (masking
    with ``mask_tokens``, ``model.mlm_loss``) and finetune steps ``model(batch)`` with BCE, each through the
    engine's one loop (`Trainer.phase` + `Engine.run`: bf16 autocast on CUDA, fused AdamW, clipping at 10),
    batch 256 (the suites' ``pretrain_batch_size`` and ``train.batch_size``).
``tallrec_lora``
    A Llama-architecture causal LM built from its config (hidden 2048, 16 layers, 32 heads, no grouped KV, FFN
    5632, vocabulary 32,000, untied head: 0.95B parameters, random weights) in bf16 on CUDA, wrapped in
    `CausalLM`, LoRA through its ``add_lora`` (TallRec's r 8, alpha 16, dropout 0.05 on q/v), gradient
    checkpointing through ``enable_gradient_checkpointing``; Yes/No BCE steps (``loss: yes_no_bce`` of the
    `tallrec` method, `batch_loss`) on random prompts of 256 tokens, batch 32 (TALLRec's), through the engine.
``ctr_zoo``
    Training samples/s of lr, fm, deepfm, dcn and dnn (the speed benchmark's configurations: embedding 16, MLP
    400-400-400, 3 cross layers) on 8 synthetic fields of 10,001 rows each, batch 1024 and 4096, through the engine
    (`RowSource` batches gathered by index from arrays already on the device; no DataLoader).
``local_gpus``
    ``ctrbench run suites/quickstart.yaml`` on a small synthetic dataset, one seed, one epoch, with
    ``executor={name: local-gpus}`` (one worker per visible GPU) in a subprocess: every run must finish with
    status ok on a CUDA device. Without CUDA it is skipped, with the reason, not faked.

Timing. Each measured phase runs ``warmup`` untimed steps and then ``steps`` timed ones in the same engine loop
(`TimedSource`): the clock starts once the warm-up steps are finished (device synchronised) and stops when the
loop asks for the batch after the last one (synchronised again), so it covers whole steps as the engine runs them
(batch gathering, forward, backward, clipping, AdamW, the engine's loss read-back).

FLOP estimates (per step of B sequences of T tokens; N = parameters of the transformer layers, embeddings and the
LM head excluded: a lookup multiplies nothing, and the causal LM's head scores only two rows at one position):

- linear layers: ``F_lin = 2 N B T`` forward; attention's two matmuls (Q K^T and A V): ``F_att = 4 L d B T A``
  forward, A = positions attended (ClickPrompt: ``T + K``, bidirectional; causal: ``(T + 1) / 2`` on average);
- ClickPrompt, all PLM weights trained (PA-MLM trains the PLM, finetuning does at ``plm_lr`` 5e-5): forward +
  backward (input and weight gradients) = ``3 (F_lin + F_att)`` = the usual ``6 N tokens`` plus attention, plus
  PA-MLM's MLM head (dense d x d + decoder d x V) on the masked positions only (counted exactly);
- TallRec LoRA with frozen base weights and gradient checkpointing: forward ``F_lin``, the checkpointed forward
  recomputed in the backward ``F_lin``, input gradients ``F_lin`` (a frozen weight gets no weight gradient) =
  ``6 N tokens`` executed (``flops_per_step``); without the recompute ``4 N tokens`` ("model FLOPs",
  ``model_flops_per_step`` / ``model_fraction_of_limit``). Attention's backward is counted as twice its forward.
- Not counted (so the fractions slightly underestimate): the CTR backbone, the prompt generator, the heads, LoRA's
  rank-8 products, layer norms and element-wise work: under 1% of the FLOPs at these sizes.

Targets (issue 18): each PLM/LLM step at >= 40% of the limit; the whole check within 8 minutes on one GPU. They
are reported (``meets_target``), not asserted: this is a measurement, the test suite runs it with ``--tiny`` on the
CPU only so the script cannot rot (`tests/test_gpu_check.py`).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
TARGET_FRACTION = 0.40  # of the measured matmul limit, for each PLM/LLM step (issue 18)
TARGET_SECONDS = 480.0  # the whole check on one GPU
SECTIONS = ("clickprompt", "tallrec", "ctr-zoo", "local-gpus")
SCHEMA = 1

# The speed benchmark's configurations (benchmarks/reference_impls.py, MODELS), plus lr and fm (no options).
HIDDEN = (400, 400, 400)
CTR_MODELS: dict[str, dict[str, Any]] = {
    "lr": {},
    "fm": {},
    "deepfm": {"hidden_units": HIDDEN},
    "dcn": {"num_cross_layers": 3, "dnn_hidden_units": HIDDEN},
    "dnn": {"hidden_units": HIDDEN},
}


@dataclass(frozen=True)
class Sizes:
    """Everything that sets the size of the check; `FULL` on a GPU, `TINY` for the CPU test."""

    matmul_sizes: tuple[int, ...] = (4096, 8192, 16384)
    matmul_iters: int = 20
    # ClickPrompt: roberta-base
    plm_hidden: int = 768
    plm_layers: int = 12
    plm_heads: int = 12
    plm_intermediate: int = 3072
    plm_vocab: int = 50265
    plm_positions: int = 514
    plm_batch: int = 256
    plm_tokens: int = 128
    plm_steps: int = 20
    plm_warmup: int = 5
    # TallRec: a ~1B Llama
    llm_hidden: int = 2048
    llm_layers: int = 16
    llm_heads: int = 32
    llm_kv_heads: int = 32
    llm_intermediate: int = 5632
    llm_vocab: int = 32000
    llm_batch: int = 32
    llm_tokens: int = 256
    llm_steps: int = 10
    llm_warmup: int = 3
    # CTR zoo
    ctr_batch_sizes: tuple[int, ...] = (1024, 4096)
    ctr_fields: int = 8
    ctr_vocab: int = 10000
    ctr_steps: int = 100
    ctr_warmup: int = 10


FULL = Sizes()
TINY = Sizes(matmul_sizes=(64, 128, 256), matmul_iters=5,
             plm_hidden=32, plm_layers=2, plm_heads=2, plm_intermediate=64, plm_vocab=1000, plm_positions=34,
             plm_batch=8, plm_tokens=16, plm_steps=2, plm_warmup=1,
             llm_hidden=32, llm_layers=2, llm_heads=2, llm_kv_heads=2, llm_intermediate=64, llm_vocab=1000,
             llm_batch=4, llm_tokens=16, llm_steps=2, llm_warmup=1,
             ctr_batch_sizes=(256,), ctr_fields=8, ctr_vocab=100, ctr_steps=3, ctr_warmup=1)


# -- timing --------------------------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedSource:
    """An engine `Source` that yields ``warmup`` untimed batches of ``inner`` and then ``steps`` timed ones
    (cycling through ``inner``'s epochs); ``seconds`` is the time of the timed steps, device synchronised at
    both ends. The loop asks for the next batch only after it has finished the previous step (its loss read back),
    so the clock covers whole engine steps."""

    def __init__(self, inner: Any, warmup: int, steps: int, device: torch.device) -> None:
        self.inner, self.warmup, self.steps, self.device = inner, warmup, steps, device
        self.seconds = math.nan

    def num_batches(self) -> int:
        return self.warmup + self.steps

    def epoch(self, gen: torch.Generator | None) -> Iterator[Any]:
        batches = self._cycle(gen)
        for _ in range(self.warmup):
            yield next(batches)
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(self.steps):
            yield next(batches)
        synchronize(self.device)
        self.seconds = time.perf_counter() - start

    def _cycle(self, gen: torch.Generator | None) -> Iterator[Any]:
        while True:
            yield from self.inner.epoch(gen)


def run_timed(trainer: Any, name: str, source: TimedSource, loss: Callable[[Any], torch.Tensor | None],
              params: Any, model: torch.nn.Module, **overrides: Any) -> float:
    """Seconds per step of ``source``'s timed steps, run as one engine phase (the run's ``train.*`` settings,
    ``overrides`` on top, one epoch)."""
    phase = trainer.phase(name, source, loss, params, model=model, epochs=1, **overrides)
    report = trainer.engine.run(phase)
    if report.steps != source.num_batches():
        raise RuntimeError(f"{name}: the engine took {report.steps} steps of {source.num_batches()} (a loss "
                           "returned None)")
    return source.seconds / source.steps


def peak_memory(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# -- the limit ------------------------------------------------------------------------------------------------

def matmul_limit(device: torch.device, dtype: torch.dtype, sizes: tuple[int, ...], iters: int) -> dict[str, Any]:
    """FLOP/s of ``c = a @ b`` for square ``n x n`` operands: best of 3 repeats of ``iters`` products per size."""
    rates = {}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        c = torch.empty(n, n, device=device, dtype=dtype)
        for _ in range(3):
            torch.matmul(a, b, out=c)
        synchronize(device)
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(iters):
                torch.matmul(a, b, out=c)
            synchronize(device)
            best = max(best, 2 * n**3 * iters / (time.perf_counter() - start))
        rates[str(n)] = best
        del a, b, c
    n_best = max(rates, key=rates.get)
    return {"status": "ok", "dtype": str(dtype).removeprefix("torch."), "flops_per_s": rates[n_best],
            "n": int(n_best), "by_size": rates, "iters": iters}


# -- FLOP estimates -------------------------------------------------------------------------------------------

def layer_flops(params: int, layers: int, hidden: int, tokens: int, attended: float) -> tuple[float, float]:
    """Forward FLOPs ``(F_lin, F_att)`` of a transformer stack over ``tokens`` tokens: 2 per layer weight per
    token, and attention's two matmuls (Q K^T, A V) over ``attended`` positions per token."""
    return 2.0 * params * tokens, 4.0 * layers * hidden * tokens * attended


def step_figures(flops: float, seconds: float, limit: float, *, model_flops: float | None = None,
                 **extra: Any) -> dict[str, Any]:
    out = {"status": "ok", "seconds_per_step": seconds, "flops_per_step": flops, "flops_per_s": flops / seconds,
           "fraction_of_limit": flops / seconds / limit, "target_fraction": TARGET_FRACTION}
    out["meets_target"] = out["fraction_of_limit"] >= TARGET_FRACTION
    if model_flops is not None:
        out["model_flops_per_step"] = model_flops
        out["model_fraction_of_limit"] = model_flops / seconds / limit
    out.update(extra)
    return out


# -- synthetic inputs -----------------------------------------------------------------------------------------

def synthetic_ctr(name: str, fields: list[Any], rows: int, seed: int = 0) -> Any:
    """A `CTRData` of ``rows`` uniformly random rows over ``fields`` (indices 1..vocab-1), random labels, every
    row in the train split."""
    from ctrbench.data.types import CTRData

    rng = np.random.default_rng(seed)
    X = np.stack([rng.integers(1, f.vocab_size, rows) for f in fields], axis=1).astype(np.int64)
    y = (rng.random(rows) < 0.3).astype(np.float32)
    empty = np.zeros(0, dtype=np.int64)
    return CTRData(name=name, fields=list(fields), X=X, y=y, ts=np.arange(rows, dtype=np.int64), user=X[:, 0].copy(),
                   item=X[:, 1].copy(), splits={"train": np.arange(rows), "valid": empty, "test": empty},
                   fingerprint=f"{name}-{rows}-{seed}")


def synthetic_tokens(rows: int, length: int, vocab_size: int, tokenizer: Any, seed: int = 0) -> Any:
    """A `TokenTable` of ``rows`` texts of exactly ``length`` tokens: [CLS], random non-special ids, [SEP]."""
    from ctrbench.text import TokenTable, id_dtype

    rng = np.random.default_rng(seed)
    first = max(tokenizer.all_special_ids) + 1
    ids = rng.integers(first, vocab_size, (rows, length))
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    return TokenTable(ids.astype(id_dtype(vocab_size)), np.full(rows, length, dtype=np.uint16),
                      pad_token_id=tokenizer.pad_token_id)


def roberta_masked_lm(s: Sizes, device: torch.device) -> Any:
    """A `MaskedLM` over a ``RobertaForMaskedLM`` built from a roberta-base-sized config, random weights, with the
    tiny WordPiece tokenizer of ``random_bert`` (its ids index the first rows; the synthetic texts use the rest)."""
    from transformers import BertTokenizer, RobertaConfig, RobertaForMaskedLM

    from ctrbench_plm.masked_lm import MaskedLM, random_vocab

    vocab = random_vocab()
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, model_max_length=s.plm_tokens)
    config = RobertaConfig(vocab_size=s.plm_vocab, hidden_size=s.plm_hidden, num_hidden_layers=s.plm_layers,
                           num_attention_heads=s.plm_heads, intermediate_size=s.plm_intermediate,
                           max_position_embeddings=s.plm_positions, type_vocab_size=1,
                           pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    with torch.device(device):
        model = RobertaForMaskedLM(config)
    return MaskedLM(model, tokenizer, name="roberta-base-sized (random)",
                    loading_info={"missing_keys": [], "new_weights": ["(all: built from config)"]})


def llama_causal_lm(s: Sizes, device: torch.device, dtype: torch.dtype) -> Any:
    """A `CausalLM` over a ``LlamaForCausalLM`` built from its config on ``device`` in ``dtype``, random weights,
    with the word-level tokenizer of ``random_llama`` (only its answer-token ids are used)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from ctrbench_plm.causal_lm import CausalLM, random_word_tokenizer

    tokenizer = random_word_tokenizer()
    config = LlamaConfig(vocab_size=s.llm_vocab, hidden_size=s.llm_hidden, num_hidden_layers=s.llm_layers,
                         num_attention_heads=s.llm_heads, num_key_value_heads=s.llm_kv_heads,
                         intermediate_size=s.llm_intermediate, max_position_embeddings=max(2048, s.llm_tokens),
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return CausalLM(model, tokenizer, name="llama-1b-sized (random)", loading_info={"source": "config"})


def amp_name(trainer: Any) -> str | None:
    """The engine's autocast dtype ("bfloat16" on a CUDA device that has it), None when it runs without autocast."""
    dtype = trainer.engine.amp_dtype()
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def make_trainer(device: torch.device, batch_size: int, lr: float = 1e-3) -> Any:
    from ctrbench.trainer import TrainConfig, Trainer

    return Trainer(TrainConfig(epochs=1, batch_size=batch_size, lr=lr, weight_decay=0.0, grad_clip=10.0), device)


# -- sections -------------------------------------------------------------------------------------------------

def check_clickprompt(s: Sizes, device: torch.device, limit: float) -> dict[str, Any]:
    """PA-MLM and with-PLM finetune steps of ClickPrompt on a roberta-base-sized PLM."""
    from ctrbench.engine import RowSource
    from ctrbench.plugins import load_plugins
    from ctrbench.testing import synthetic_fields
    from ctrbench.text import IGNORE, mask_tokens, maskable
    from ctrbench.trainer import default_loss
    from ctrbench_clickprompt.config import ClickPromptConfig
    from ctrbench_clickprompt.method import ClickPrompt, pamlm_param_groups
    from ctrbench_clickprompt.model import ClickPromptModel

    cfg = ClickPromptConfig()
    torch.manual_seed(0)
    plm = roberta_masked_lm(s, device)
    fields = synthetic_fields()
    rows = s.plm_batch * 8
    data = synthetic_ctr("gpu-check-clickprompt", fields, rows)
    tokens = synthetic_tokens(rows, s.plm_tokens, s.plm_vocab, plm.tokenizer)
    ctr = load_plugins().registry("ctr").get("dnn").create(fields=fields, embed_dim=16, hidden_units=HIDDEN)
    model = ClickPromptModel(ctr, plm, tokens, num_prompts=cfg.num_prompts, prompt_mode=cfg.prompt_mode,
                             use_prompt=cfg.use_prompt, alpha_init=cfg.alpha_init).to(device)
    trainer = make_trainer(device, s.plm_batch)
    train_rows = trainer.train_rows(data)

    def source() -> TimedSource:
        return TimedSource(RowSource(trainer.device_data(data), train_rows, s.plm_batch), s.plm_warmup, s.plm_steps,
                           device)

    # PA-MLM: the loss of ctrbench_clickprompt.method.pretrain_pamlm, counting the masked positions
    special = sorted(plm.tokenizer.all_special_ids)
    mask_gen = torch.Generator().manual_seed(1)
    selected = torch.zeros((), dtype=torch.long, device=device)

    def pamlm_loss(batch: Any) -> torch.Tensor | None:
        nonlocal selected
        ids, mask = model.text(batch)
        corrupted, labels = mask_tokens(ids, maskable(ids, mask, special), mask_token_id=plm.mask_token_id,
                                        vocab_size=plm.vocab_size, mask_prob=cfg.mask_prob, generator=mask_gen)
        if not (labels != IGNORE).any():
            return None
        selected = selected + (labels != IGNORE).sum()
        return model.mlm_loss(batch, corrupted, mask, labels)

    enc_params = sum(p.numel() for p in plm.model.base_model.encoder.parameters())
    head_params = plm.hidden_size * plm.hidden_size + plm.hidden_size * plm.vocab_size  # dense + decoder
    tokens_per_step = s.plm_batch * s.plm_tokens
    lin, att = layer_flops(enc_params, plm.num_layers, plm.hidden_size, tokens_per_step,
                           s.plm_tokens + cfg.num_prompts)
    common = {"batch_size": s.plm_batch, "tokens_per_step": tokens_per_step, "encoder_params": enc_params,
              "plm_params": sum(p.numel() for p in plm.parameters()),
              "model_params": sum(p.numel() for p in model.parameters()), "steps": s.plm_steps,
              "warmup_steps": s.plm_warmup, "amp_dtype": amp_name(trainer),
              "prompt_mode": cfg.prompt_mode, "num_prompts": cfg.num_prompts}
    out: dict[str, Any] = {}

    reset_memory(device)
    src = source()
    seconds = run_timed(trainer, "PA-MLM", src, pamlm_loss, pamlm_param_groups(model, cfg), model,
                        lr=cfg.pretrain_lr, weight_decay=0.01)
    masked_per_step = float(selected) / src.num_batches()
    flops = 3 * (lin + att + 2.0 * head_params * masked_per_step)
    out["clickprompt_pamlm"] = step_figures(
        flops, seconds, limit, **common, masked_tokens_per_step=masked_per_step, peak_memory_bytes=peak_memory(device),
        estimate="3 x forward (all weights trained): forward = 2 x encoder_params x tokens + 4 x layers x hidden x "
                 "tokens x (T + K) (attention) + 2 x (hidden^2 + hidden x vocab) x masked tokens (MLM head)")

    reset_memory(device)
    src = source()
    groups = ClickPrompt(cfg)._param_groups(model)  # the method's groups: PLM at plm_lr, the rest at train.lr
    seconds = run_timed(trainer, "finetune with PLM", src, lambda batch: default_loss(model, batch), groups, model)
    out["clickprompt_finetune"] = step_figures(
        3 * (lin + att), seconds, limit, **common, plm_lr=cfg.plm_lr, peak_memory_bytes=peak_memory(device),
        estimate="3 x forward (all weights trained): forward = 2 x encoder_params x tokens + 4 x layers x hidden x "
                 "tokens x (T + K) (attention); backbone, generator and heads not counted")
    return out


def check_tallrec(s: Sizes, device: torch.device, limit: float) -> dict[str, Any]:
    """Yes/No BCE steps of TallRec's LoRA on a ~1B Llama, bf16 (CUDA) and gradient checkpointing."""
    from ctrbench.engine import IndexSource
    from ctrbench_sllm4ctr.config import TallRecConfig
    from ctrbench_sllm4ctr.method import batch_loss

    cfg = TallRecConfig(loss="yes_no_bce")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    reset_memory(device)
    lm = llama_causal_lm(s, device, dtype)
    layers = lm.base_model().get_decoder().layers
    layer_params = sum(p.numel() for p in layers.parameters())
    total_params = sum(p.numel() for p in lm.parameters())
    trainable = lm.add_lora(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets, seed=0)
    lm.to(device)
    lm.enable_gradient_checkpointing()  # on the CPU too, so --tiny exercises the path the GPU run takes
    checkpointing = True

    n = s.llm_batch * 4
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, s.llm_vocab, (n, s.llm_tokens), generator=gen).to(device)
    mask = torch.ones_like(ids)
    y = (torch.arange(n) % 2).float().to(device)

    def loss(rows: torch.Tensor) -> torch.Tensor:
        rows = rows.to(device)
        return batch_loss(cfg, lm, ids[rows], mask[rows], y[rows])

    trainer = make_trainer(device, s.llm_batch, lr=1e-4)
    src = TimedSource(IndexSource(n, s.llm_batch), s.llm_warmup, s.llm_steps, device)
    seconds = run_timed(trainer, "TallRec LoRA", src, loss, lm.trainable_parameters(), lm)
    tokens_per_step = s.llm_batch * s.llm_tokens
    lin, att = layer_flops(layer_params, s.llm_layers, s.llm_hidden, tokens_per_step, (s.llm_tokens + 1) / 2)
    recompute = 1 if checkpointing else 0
    executed = (1 + recompute + 1) * lin + (1 + recompute + 2) * att
    model_flops = 2 * lin + 3 * att
    return {"tallrec_lora": step_figures(
        executed, seconds, limit, model_flops=model_flops, batch_size=s.llm_batch, tokens_per_step=tokens_per_step,
        layer_params=layer_params, total_params=total_params, trainable_params=trainable,
        dtype=str(dtype).removeprefix("torch."), amp_dtype=amp_name(trainer), gradient_checkpointing=checkpointing,
        lora=dict(lm.lora_config or {}), steps=s.llm_steps, warmup_steps=s.llm_warmup,
        peak_memory_bytes=peak_memory(device),
        estimate="linear layers (frozen): forward 2 x layer_params x tokens, recomputed forward (checkpointing) the "
                 "same, input gradients the same = 6 x layer_params x tokens; causal attention 4 x layers x hidden x "
                 "tokens x (T + 1) / 2 forward, x 4 with recompute and backward; model FLOPs omit the recompute")}


def check_ctr_zoo(s: Sizes, device: torch.device) -> dict[str, Any]:
    """Training samples/s of five CTR backbones through the engine, data on the device."""
    from ctrbench.data.types import Field
    from ctrbench.engine import RowSource
    from ctrbench.plugins import load_plugins
    from ctrbench.trainer import default_loss

    fields = [Field(name, "categorical", s.ctr_vocab + 1)
              for name in ("user_id", "item_id", *(f"f{j}" for j in range(2, s.ctr_fields)))]
    rows = max(s.ctr_batch_sizes) * 16
    data = synthetic_ctr("gpu-check-ctr", fields, rows)
    registry = load_plugins().registry("ctr")
    cells = []
    for batch_size in s.ctr_batch_sizes:
        if rows % batch_size:
            raise ValueError(f"batch {batch_size} does not divide the {rows} rows (the last batch would be short)")
        trainer = make_trainer(device, batch_size)
        dd = trainer.device_data(data)
        train_rows = trainer.train_rows(data)
        for name, config in CTR_MODELS.items():
            reset_memory(device)
            torch.manual_seed(0)
            model = registry.get(name).create(fields=fields, embed_dim=16, **config).to(device)
            src = TimedSource(RowSource(dd, train_rows, batch_size), s.ctr_warmup, s.ctr_steps, device)
            params = [p for p in model.parameters() if p.requires_grad]
            seconds = run_timed(trainer, f"{name} b{batch_size}", src, lambda b, m=model: default_loss(m, b),
                                params, model)
            cells.append({"model": name, "batch_size": batch_size, "seconds_per_step": seconds,
                          "samples_per_s": batch_size / seconds, "params": sum(p.numel() for p in params),
                          "peak_memory_bytes": peak_memory(device)})
    return {"ctr_zoo": {"status": "ok", "fields": s.ctr_fields, "rows_per_field": s.ctr_vocab + 1, "embed_dim": 16,
                        "rows": rows, "steps": s.ctr_steps, "warmup_steps": s.ctr_warmup,
                        "amp_dtype": amp_name(make_trainer(device, 1)), "cells": cells}}


def check_local_gpus(device: torch.device, timeout: float = 240.0) -> dict[str, Any]:
    """A tiny quickstart suite through the `local-gpus` executor, in a subprocess, on the real GPUs."""
    if device.type != "cuda":
        return {"local_gpus": {"status": "skipped", "reason": "no CUDA device"}}
    return {"local_gpus": run_local_gpus("cuda", "{name: local-gpus}", timeout)}


def run_local_gpus(device: str, executor: str, timeout: float = 300.0) -> dict[str, Any]:
    """``ctrbench run suites/quickstart.yaml`` (4 backbones, 1 seed, 1 epoch, a 20,000-row synthetic dataset) with
    ``--device device`` and ``executor=executor`` in a fresh process and temporary store, cache and boards; ok when
    every run finished with status ok on a device of that type."""
    argv = [sys.executable, "-m", "ctrbench.cli", "run", str(REPO / "suites" / "quickstart.yaml"),
            "--store", "runs", "--leaderboards", "boards", "--device", device, "--set",
            "dataset={name: synthetic, num_samples: 20000, num_fields: 8, vocab_size: 1000, history_length: 0}",
            "seeds=[1]", "train.epochs=1", f"executor={executor}"]
    with tempfile.TemporaryDirectory(prefix="ctrbench-gpu-check-") as tmp:
        env = {**os.environ, "CTRBENCH_CACHE": str(Path(tmp) / "cache")}
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
        store = Path(tmp) / "runs"
        results = [json.loads(p.read_text()) for p in store.glob("*/*/result.json")]
        provenance = [json.loads(p.read_text()) for p in store.glob("*/*/provenance.json")]
    devices = sorted({str(p.get("device")) for p in provenance})
    workers = sorted({str((p.get("worker") or {}).get("cuda_visible_devices")) for p in provenance})
    kind = device.split(":")[0]
    ok = (done.returncode == 0 and len(results) > 0 and all(r.get("status") == "ok" for r in results)
          and len(devices) > 0 and all(d.startswith(kind) for d in devices))
    out = {"status": "ok" if ok else "error", "returncode": done.returncode, "runs": len(results),
           "runs_ok": sum(r.get("status") == "ok" for r in results), "devices": devices,
           "worker_cuda_visible_devices": workers, "wall_seconds": wall, "command": " ".join(argv[1:])}
    if not ok:
        out["error"] = f"the {executor} run did not finish every run with status ok on a {kind} device"
        out["output_tail"] = (done.stdout + done.stderr)[-3000:]
    return out


# -- report ---------------------------------------------------------------------------------------------------

def environment(device: torch.device) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for dist in ("ctrbench", "torch", "transformers", "peft", "numpy"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    env = {"device": str(device), "torch": torch.__version__, "versions": versions, "python": platform.python_version(),
           "platform": platform.platform(), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(name=props.name, memory_bytes=int(props.total_memory), capability=f"{props.major}.{props.minor}",
                   cuda=torch.version.cuda, device_count=torch.cuda.device_count(),
                   bf16=torch.cuda.is_bf16_supported())
    else:
        env["name"] = f"cpu ({platform.machine()}, {platform.processor() or 'unknown'})"
    return env


def _si(x: float | None, unit: str) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.1f} {prefix}{unit}"
    return f"{x:.1f} {unit}"


def table(report: dict[str, Any]) -> str:
    env, limit = report["environment"], report["limit"]
    lines = [f"gpu_check on {env['name']} ({env['device']}, torch {env['torch']}){' --tiny' if report['tiny'] else ''}",
             f"limit: {limit.get('dtype', '?')} matmul {_si(limit.get('flops_per_s'), 'FLOP/s')} "
             f"(n = {limit.get('n', '?')})", "",
             "| measurement | s/step | tokens/step | FLOP/step | achieved | of limit | target |",
             "| :--- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    m = report["measurements"]
    for key in ("clickprompt_pamlm", "clickprompt_finetune", "tallrec_lora"):
        r = m.get(key, {})
        if r.get("status") != "ok":
            lines.append(f"| {key} | {r.get('status', '-')}: {r.get('reason') or r.get('error', '')} | | | | | |")
            continue
        mark = "ok" if r["meets_target"] else "below"
        extra = f" (model FLOPs {r['model_fraction_of_limit']:.0%})" if "model_fraction_of_limit" in r else ""
        lines.append(f"| {key} | {r['seconds_per_step']:.4f} | {r['tokens_per_step']:,} | "
                     f"{_si(r['flops_per_step'], 'FLOP')} | {_si(r['flops_per_s'], 'FLOP/s')} | "
                     f"{r['fraction_of_limit']:.1%}{extra} | >= {r['target_fraction']:.0%} {mark} |")
    zoo = m.get("ctr_zoo", {})
    lines += ["", "| CTR model | batch | s/step | samples/s |", "| :--- | ---: | ---: | ---: |"]
    if zoo.get("status") == "ok":
        lines += [f"| {c['model']} | {c['batch_size']} | {c['seconds_per_step']:.5f} | {c['samples_per_s']:,.0f} |"
                  for c in zoo["cells"]]
    else:
        lines.append(f"| ctr_zoo | {zoo.get('status', '-')}: {zoo.get('reason') or zoo.get('error', '')} | | |")
    lg = m.get("local_gpus", {})
    if lg.get("status") == "ok":
        lines += ["", f"local-gpus: {lg['runs_ok']}/{lg['runs']} runs ok on {', '.join(lg['devices'])} in "
                      f"{lg['wall_seconds']:.0f} s"]
    else:
        lines += ["", f"local-gpus: {lg.get('status', '-')}: {lg.get('reason') or lg.get('error', '')}"]
    lines.append(f"\nwhole check: {report['seconds']:.0f} s (target <= {TARGET_SECONDS:.0f} s on one GPU)")
    return "\n".join(lines)


def _section(name: str, fn: Callable[[], dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Run one section; an exception becomes an ``error`` entry for each of its keys (the other sections still
    run, so one GPU session gives every figure it can)."""
    start = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001  (reported in the JSON and the exit code)
        tb = traceback.format_exc()
        print(tb, file=sys.stderr)
        out = {k: {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": tb[-4000:]} for k in keys}
    wall = time.perf_counter() - start
    for entry in out.values():
        entry.setdefault("wall_seconds", wall)
    statuses = ", ".join(f"{k} {v['status']}" for k, v in out.items())
    print(f"[gpu_check] {name}: {statuses} ({wall:.1f} s)", file=sys.stderr, flush=True)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu (default: cuda when available)")
    p.add_argument("--tiny", action="store_true", help="tiny models and few steps (the CPU test of the script)")
    p.add_argument("--out", help="JSON file (default: benchmarks/results/<UTC time>-gpu-check.json)")
    p.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="skip a section (repeatable)")
    p.add_argument("--plm-batch", type=int, help=f"ClickPrompt batch (default {FULL.plm_batch})")
    p.add_argument("--llm-batch", type=int, help=f"TallRec batch (default {FULL.llm_batch})")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ctrbench.trainer import resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    sizes = TINY if args.tiny else FULL
    if args.plm_batch:
        sizes = replace(sizes, plm_batch=args.plm_batch)
    if args.llm_batch:
        sizes = replace(sizes, llm_batch=args.llm_batch)
    if device.type == "cpu" and not args.tiny:
        print("[gpu_check] full sizes on the CPU: this takes very long; use --tiny", file=sys.stderr)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    limit = _section("limit", lambda: {"limit": matmul_limit(device, dtype, sizes.matmul_sizes, sizes.matmul_iters)},
                     ("limit",))["limit"]
    rate = limit.get("flops_per_s", math.nan)
    plan: list[tuple[str, Callable[[], dict[str, Any]], tuple[str, ...]]] = [
        ("clickprompt", lambda: check_clickprompt(sizes, device, rate), ("clickprompt_pamlm", "clickprompt_finetune")),
        ("tallrec", lambda: check_tallrec(sizes, device, rate), ("tallrec_lora",)),
        ("ctr-zoo", lambda: check_ctr_zoo(sizes, device), ("ctr_zoo",)),
        ("local-gpus", lambda: check_local_gpus(device), ("local_gpus",)),
    ]
    measurements: dict[str, Any] = {}
    for name, fn, keys in plan:
        if name in args.skip:
            measurements.update({k: {"status": "skipped", "reason": "--skip"} for k in keys})
        elif limit["status"] != "ok" and name != "local-gpus" and name != "ctr-zoo":
            measurements.update({k: {"status": "skipped", "reason": "no matmul limit"} for k in keys})
        else:
            measurements.update(_section(name, fn, keys))
        reset_memory(device)
    seconds = time.perf_counter() - t0
    report = {"schema": SCHEMA, "tiny": args.tiny, "started": started.isoformat(timespec="seconds"),
              "seconds": seconds, "environment": environment(device), "sizes": asdict(sizes),
              "targets": {"fraction_of_limit": TARGET_FRACTION, "seconds": TARGET_SECONDS,
                          "within_seconds": seconds <= TARGET_SECONDS},
              "limit": limit, "measurements": measurements}
    out = Path(args.out) if args.out else (REPO / "benchmarks" / "results"
                                           / f"{started.strftime('%Y%m%dT%H%M%SZ')}-gpu-check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    print(f"\nwrote {out}")
    failed = [k for k, v in [("limit", limit), *measurements.items()] if v.get("status") == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
