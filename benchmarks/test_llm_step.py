"""Cost of one TallRec/SLLM4CTR LoRA training step and of scoring prompts, on the embedded SmolLM2-135M.

Two ways to get the Yes/No scores are timed in the same process on the same batch:

- ``ctrbench``: ``CausalLM.forward`` — the decoder once, then the LM head on the last position and the two answer
  rows only (``[B, H] @ [H, 2]``);
- ``reference``: what a straightforward implementation does — ``model(...).logits[:, -1, [no, yes]]``, the full
  vocabulary head on every position (``[B, L, H] @ [H, 49152]``) and its gradient.

The ``ctrbench`` forward is also timed under bf16 autocast (``train.cpu_amp``), as float32 / bf16 ratios.
Both include the adaptive temperature and label-matching loss of ``sllm4ctr`` (they are negligible). Reported:
median seconds per training step (forward + backward + AdamW on the LoRA parameters) and per scored prompt, and the
reference / ctrbench ratio. Batch and prompt length: ``CTRBENCH_BENCH_LLM_BATCH`` (8) x ``CTRBENCH_BENCH_LLM_TOKENS``
(96, the length of the MovieLens prompts of the suites). ``CTRBENCH_BENCH_LLM=random-llama`` runs it on the tiny
random model (a smoke test of the benchmark itself).
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from ctrbench.plugins import load_plugins
from ctrbench_sllm4ctr.config import LLMCTRConfig
from ctrbench_sllm4ctr.method import yes_no_loss

BATCH = int(os.environ.get("CTRBENCH_BENCH_LLM_BATCH", "8"))
TOKENS = int(os.environ.get("CTRBENCH_BENCH_LLM_TOKENS", "96"))
MODEL = os.environ.get("CTRBENCH_BENCH_LLM", "smollm2-135m")


def _reference_forward(lm, ids, mask):
    """Full-vocabulary logits; the click/prompt embeddings from output_hidden_states (what a user would write)."""
    from ctrbench_plm.causal_lm import YesNoOutput

    out = lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
    hidden = out.hidden_states[-1]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return YesNoOutput(out.logits[:, -1, [lm.no_id, lm.yes_id]].float(), hidden[:, -1],
                       (hidden * m).sum(1) / m.sum(1))


def _median_seconds(fn, warmup: int, rounds: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def test_lora_step_and_scoring(benchmark, bench):
    torch.manual_seed(0)
    lm = load_plugins().registry("plm").get(MODEL).create()
    lm.add_lora(8, 16, 0.0, ("q_proj", "k_proj", "v_proj", "o_proj"))
    vocab = lm.model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(10, vocab, (BATCH, TOKENS))
    mask = torch.ones_like(ids)
    y = (torch.arange(BATCH) % 2).float()
    cfg = LLMCTRConfig()
    opt = torch.optim.AdamW(lm.trainable_parameters(), lr=1e-5)
    forwards = {"ctrbench": lambda: lm(ids, mask), "reference": lambda: _reference_forward(lm, ids, mask)}

    def step(forward):
        loss, _ = yes_no_loss(cfg, forward(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def score(forward):
        with torch.no_grad():
            forward()

    rounds, warmup = max(bench.rounds, 3), max(bench.warmup, 1)
    results = {}
    for name, fwd in forwards.items():
        lm.train()
        results[f"{name}_step_s"] = _median_seconds(lambda f=fwd: step(f), warmup, rounds)
        lm.eval()
        results[f"{name}_score_s_per_prompt"] = _median_seconds(lambda f=fwd: score(f), warmup, rounds) / BATCH
    # train.cpu_amp: the same step and scoring under bf16 autocast (oneDNN bf16 matmuls where the CPU has them)
    def bf16(fn):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fn()
    lm.train()
    results["ctrbench_bf16_step_s"] = _median_seconds(lambda: bf16(lambda: step(forwards["ctrbench"])),
                                                      warmup, rounds)
    lm.eval()
    results["ctrbench_bf16_score_s_per_prompt"] = _median_seconds(
        lambda: bf16(lambda: score(forwards["ctrbench"])), warmup, rounds) / BATCH
    lm.train()
    benchmark.pedantic(step, args=(forwards["ctrbench"],), rounds=rounds, warmup_rounds=0, iterations=1)
    results["step_ratio_reference_over_ctrbench"] = results["reference_step_s"] / results["ctrbench_step_s"]
    results["score_ratio_reference_over_ctrbench"] = (results["reference_score_s_per_prompt"]
                                                      / results["ctrbench_score_s_per_prompt"])
    results["step_ratio_float32_over_bf16"] = results["ctrbench_step_s"] / results["ctrbench_bf16_step_s"]
    results["score_ratio_float32_over_bf16"] = (results["ctrbench_score_s_per_prompt"]
                                                / results["ctrbench_bf16_score_s_per_prompt"])
    benchmark.extra_info.update({"model": MODEL, "batch": BATCH, "tokens": TOKENS, "threads": torch.get_num_threads(),
                                 **{k: round(v, 4) for k, v in results.items()}})
    print("\n" + "  ".join(f"{k}={v:.4f}" for k, v in results.items()))
    assert results["ctrbench_step_s"] > 0 and results["reference_step_s"] > 0
