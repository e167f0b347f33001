"""Where a ctrbench training epoch's time goes against the arithmetic limit: how much of it is matrix products,
and how fast those products run *in the training loop* compared with the same shape measured hot in a loop.

    python benchmarks/step_profile.py [--models dnn,deepfm,dcn,dcnv2,deepfm-256-128,dcn-2x-128-128] [--rounds 3]
    python benchmarks/step_profile.py --tiny    # small synthetic data, seconds (the test suite runs it)

MovieLens-100K, the throughput benchmark's configuration (``reference_impls.MODELS``), batch 256, one thread.
Why: the roofline fraction (``roofline.py``) is one number; to say what stops it short of a target we need its
two factors. ``fraction of limit ≈ matmul share of the time × in-loop matmul rate ÷ limit``: the first says how
much fusing or removing the small ops could give, the second how much the matrix products themselves lose to
cache-cold operands in a real step (the limit is one ``[256, 400] @ [400, 400]`` product repeated on hot data).
Both come from one profiled epoch (``torch.profiler``, self CPU time of ``aten::mm``/``addmm``/``bmm``; FLOPs of
the same epoch counted by ``FlopCounterMode`` in a separate pass, so neither instrument perturbs the other), the
fraction from unprofiled epochs (best of ``--rounds``). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from reference_impls import MODELS, CtrbenchAdapter
from roofline import matmul_flops_per_second

from ctrbench.data.cache import cache_root
from ctrbench.plugins import load_plugins

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm")


@dataclass(frozen=True)
class StepProfile:
    model: str
    samples_per_s: float
    flops_per_sample: float  # matmul FLOPs of one training sample (forward + backward)
    fraction_of_limit: float
    matmul_share: float  # of the profiled epoch's self CPU time
    in_loop_matmul_rate: float  # FLOP/s of the epoch's matrix products while they ran
    limit: float  # FLOP/s of the hot single-shape product


def profile_model(data: object, model: str, rounds: int, limit: float) -> StepProfile:
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    adapter = CtrbenchAdapter(data, model, 256)
    adapter.build()
    adapter.fit_one_epoch()  # warm-up: allocator, page faults, first-call dispatch
    rows = len(data.splits["train"])  # type: ignore[attr-defined]
    rate = 0.0
    for _ in range(rounds):
        adapter.build()
        t0 = time.perf_counter()
        adapter.fit_one_epoch()
        rate = max(rate, rows / (time.perf_counter() - t0))
    adapter.build()
    with FlopCounterMode(display=False) as counter:
        adapter.fit_one_epoch()
    epoch_flops = counter.get_total_flops()
    adapter.build()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        adapter.fit_one_epoch()
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    matmul_us = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    adapter.close()
    # FLOPs per training sample are the epoch's FLOPs less the validation pass's forward FLOPs; the validation
    # pass is a forward only, a third of a training step's products for the same rows.
    valid = len(data.splits["valid"])  # type: ignore[attr-defined]
    per_sample = epoch_flops / (rows + valid / 3)
    return StepProfile(model=model, samples_per_s=rate, flops_per_sample=per_sample,
                       fraction_of_limit=per_sample * rate / limit,
                       matmul_share=matmul_us / total_us, in_loop_matmul_rate=epoch_flops / (matmul_us * 1e-6),
                       limit=limit)


def main(argv: list[str] | None = None) -> list[StepProfile]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dnn,deepfm,dcn,dcnv2,deepfm-256-128,dcn-2x-128-128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="small synthetic data, seconds (for the test suite)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    datasets = load_plugins().registry("datasets")
    if args.tiny:
        data = datasets.get("synthetic").create(num_samples=3000, vocab_size=50, history_length=0).load(cache_root())
    else:
        data = datasets.get("movielens-100k").create(history_length=0).load(cache_root())
    limit = matmul_flops_per_second()
    print(f"limit: [256, 400] @ [400, 400] hot, one thread: {limit / 1e9:.1f} GFLOP/s")
    print("| Model | samples/s | fraction of limit | matmul share of time | in-loop matmul rate / limit |")
    print("| :--- | ---: | ---: | ---: | ---: |")
    profiles = []
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"--models: unknown benchmark model '{name}'; known: {', '.join(MODELS)}")
        p = profile_model(data, name, args.rounds, limit)
        profiles.append(p)
        print(f"| {p.model} | {p.samples_per_s:,.0f} | {p.fraction_of_limit:.0%} | {p.matmul_share:.0%} "
              f"| {p.in_loop_matmul_rate / p.limit:.0%} |")
    return profiles


if __name__ == "__main__":
    main()
