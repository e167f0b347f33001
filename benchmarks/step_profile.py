"""Where a ctrbench training epoch's time goes against the arithmetic limit: how much of it is matrix products,
and how fast those products run *in the training loop* compared with the same shape measured hot in a loop.

    python benchmarks/step_profile.py [--models dnn,deepfm,dcn,dcnv2,deepfm-256-128,dcn-2x-128-128] [--rounds 3]
    python benchmarks/step_profile.py --tiny    # small synthetic data, seconds (the test suite runs it)
    python benchmarks/step_profile.py --parts [--peers benchmarks/results/<run>-overhead.json]

MovieLens-100K, the throughput benchmark's configuration (``reference_impls.MODELS``), batch 256, one thread.
Why: the roofline fraction (``roofline.py``) is one number; to say what stops it short of a target we need its
two factors. ``fraction of limit ≈ matmul share of the time × in-loop matmul rate ÷ limit``: the first says how
much fusing or removing the small ops could give, the second how much the matrix products themselves lose to
cache-cold operands in a real step (the limit is one ``[256, 400] @ [400, 400]`` product repeated on hot data).
Both come from one profiled epoch (``torch.profiler``, self CPU time of ``aten::mm``/``addmm``/``bmm``; FLOPs of
the same epoch counted by ``FlopCounterMode`` in a separate pass, so neither instrument perturbs the other), the
fraction from unprofiled epochs (best of ``--rounds``). Run it on an idle machine.

``--parts`` answers a different question, for the overhead-regime models: how fast could the step be at all in
eager PyTorch? It times a step's parts alone with ``perf_counter`` (the profiler's per-op times are not additive
for ops of a few microseconds: on the Xeon it charged a [256, 256] ReLU 91 µs that takes 7–10 µs timed alone):
the engine's whole step, the model's forward + backward alone on the same batches (no optimizer, clipping or
zeroing), the same with the forward traced by TorchScript (what removing the Python between the ops gives), and
the model's MLP tower alone. With a peer's samples/s (``--peers``, the JSON of a
``run.sh overhead`` run) it prints the step time a speed target allows next to the forward + backward the
model needs, so a target that the kernels alone already exceed shows as such.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from reference_impls import MODELS, CtrbenchAdapter
from roofline import matmul_flops_per_second, train_flops_per_sample

from ctrbench.data.cache import cache_root
from ctrbench.models.layers import MLP
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


@dataclass(frozen=True)
class StepParts:
    model: str
    engine_step_us: float  # the engine's whole training step (batching, forward, backward, clipping, AdamW)
    forward_backward_us: float  # the model's forward, loss and backward alone, on the same batches
    traced_us: float  # the same with the model's forward run by TorchScript (``torch.jit.trace``)
    tower_us: float  # the model's MLP tower alone, forward + backward (0 for models without one)
    arithmetic_us: float  # the step's matrix products at the hot-product rate: the arithmetic floor


def _per_step_us(fn: Any, batches: list[Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds + 1):  # the first pass warms up
        t0 = time.perf_counter()
        for batch in batches:
            fn(batch)
        best = min(best, (time.perf_counter() - t0) / len(batches))
    return best * 1e6


def step_parts(data: Any, model: str, rounds: int, limit: float) -> StepParts:
    """The step of ``model`` at batch 256 and parts of it, each timed alone (best of ``rounds``)."""
    from ctrbench.engine.sources import DeviceData

    adapter = CtrbenchAdapter(data, model, 256)
    adapter.build()
    net = adapter.model
    dd = DeviceData(data, torch.device("cpu"))
    order = torch.randperm(len(data.splits["train"]), generator=torch.Generator().manual_seed(0))
    rows = torch.as_tensor(data.splits["train"], dtype=torch.int64)[order]
    batches = [dd.batch(rows[i:i + 256]) for i in range(0, len(rows) - 255, 256)]

    def forward_backward(batch: Any) -> None:
        for p in net.parameters():
            p.grad = None
        torch.nn.functional.binary_cross_entropy_with_logits(net(batch), batch.y).backward()

    flops_per_sample = train_flops_per_sample(net, batches[0], 256)
    fwd_bwd = _per_step_us(forward_backward, batches, rounds)
    traced_us = _per_step_us(_traced_forward_backward(net, batches[0]), batches, rounds)
    tower_us = 0.0
    tower = next((m for m in net.modules() if isinstance(m, MLP)), None)
    if tower is not None:
        x = (torch.randn(256, tower.input_dim) * 1e-2).requires_grad_()

        def tower_step(_: Any) -> None:
            for p in tower.parameters():
                p.grad = None
            x.grad = None  # the input gradient is computed (in a model it flows to the embeddings), not accumulated
            tower(x).sum().backward()

        tower_us = _per_step_us(tower_step, batches, rounds)
    # the engine: best-of-rounds epochs through the benchmark's adapter (validation pass included, as timed there)
    n_train, n_valid = len(data.splits["train"]), len(data.splits["valid"])
    adapter.fit_one_epoch()
    best = float("inf")
    for _ in range(rounds):
        adapter.build()
        t0 = time.perf_counter()
        adapter.fit_one_epoch()
        best = min(best, time.perf_counter() - t0)
    adapter.close()
    engine_step = best / (n_train + n_valid / 3) * 256 * 1e6  # a validation row costs about a third of a training row
    return StepParts(model, engine_step_us=engine_step, forward_backward_us=fwd_bwd, traced_us=traced_us,
                     tower_us=tower_us, arithmetic_us=flops_per_sample * 256 / limit * 1e6)


def _traced_forward_backward(net: torch.nn.Module, example: Any) -> Any:
    """Forward + backward with the forward traced by TorchScript: its graph executor runs the ops without the
    Python between them, the one saving left to eager autograd short of a compiler. Traced through the
    categorical indices alone, which is all a CTR backbone without sequences reads of a batch. ``torch.jit.trace``
    warns that it is deprecated (torch 2.13; silenced here); measured, not proposed for the trainer."""
    import warnings

    from ctrbench.models.base import Batch

    class ByIndices(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(Batch(x=x, y=x, idx=x))  # y and idx are not read by the backbone's forward

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(ByIndices(), (example.x,), check_trace=False)
    if not torch.equal(traced(example.x), net(example)):  # a trace that froze a branch would time another model
        raise RuntimeError("the traced forward differs from the eager one")

    def step(batch: Any) -> None:
        for p in net.parameters():
            p.grad = None
        torch.nn.functional.binary_cross_entropy_with_logits(traced(batch.x), batch.y).backward()

    return step


def peer_rates(path: str) -> dict[tuple[str, str], float]:
    """(model, impl) → training samples/s at batch 256 from a ``run.sh overhead`` pytest-benchmark JSON."""
    from report import load

    _, grid, _ = load(Path(path))
    return {(key[1], impl): cell["samples_per_s"] for key, cells in grid.items() if key[2] == 256
            for impl, cell in cells.items()}


def print_parts(parts: list[StepParts], peers: dict[tuple[str, str], float]) -> None:
    """One table row per model; with peers, the step time each speed target allows."""
    print("| Model | engine step µs | forward + backward alone µs | the same, forward traced µs | MLP tower alone µs "
          "| arithmetic floor µs | step for 3× DeepCTR-Torch µs | step for 5× FuxiCTR µs |")
    print("| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in parts:
        allowed = []
        for impl, factor in (("deepctr", 3), ("fuxictr", 5)):
            rate = peers.get((p.model, impl))
            allowed.append(f"{256 / (factor * rate) * 1e6:,.0f}" if rate else "–")
        print(f"| {p.model} | {p.engine_step_us:,.0f} | {p.forward_backward_us:,.0f} | {p.traced_us:,.0f} "
              f"| {p.tower_us:,.0f} "
              f"| {p.arithmetic_us:,.0f} | {allowed[0]} | {allowed[1]} |")


def main(argv: list[str] | None = None) -> list[StepProfile]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated benchmark models (default: all six; with --parts, the "
                        "overhead regime's DeepFM and DCN)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="small synthetic data, seconds (for the test suite)")
    parser.add_argument("--parts", action="store_true",
                        help="time a step's parts alone")
    parser.add_argument("--peers", help="a run.sh overhead JSON: print the step time each speed target allows")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    datasets = load_plugins().registry("datasets")
    if args.tiny:
        data = datasets.get("synthetic").create(num_samples=3000, vocab_size=50, history_length=0).load(cache_root())
    else:
        data = datasets.get("movielens-100k").create(history_length=0).load(cache_root())
    limit = matmul_flops_per_second()
    print(f"limit: [256, 400] @ [400, 400] hot, one thread: {limit / 1e9:.1f} GFLOP/s")
    if args.parts:
        models = args.models or "deepfm-256-128,dcn-2x-128-128"
        peers = peer_rates(args.peers) if args.peers else {}
        parts = [step_parts(data, name, args.rounds, limit) for name in _known(models)]
        print_parts(parts, peers)
        return parts
    print("| Model | samples/s | fraction of limit | matmul share of time | in-loop matmul rate / limit |")
    print("| :--- | ---: | ---: | ---: | ---: |")
    profiles = []
    for name in _known(args.models or "dnn,deepfm,dcn,dcnv2,deepfm-256-128,dcn-2x-128-128"):
        p = profile_model(data, name, args.rounds, limit)
        profiles.append(p)
        print(f"| {p.model} | {p.samples_per_s:,.0f} | {p.fraction_of_limit:.0%} | {p.matmul_share:.0%} "
              f"| {p.in_loop_matmul_rate / p.limit:.0%} |")
    return profiles


def _known(models: str) -> list[str]:
    names = models.split(",")
    for name in names:
        if name not in MODELS:
            raise SystemExit(f"--models: unknown benchmark model '{name}'; known: {', '.join(MODELS)}")
    return names


if __name__ == "__main__":
    main()
