"""The arithmetic limit of a training run: model FLOPs per sample and the machine's matmul rate, both measured
in the benchmark's own process, so "fraction of the limit" = FLOPs/sample × samples/s ÷ matmul FLOP/s.

Why these two numbers: a 400-wide MLP at batch 256 is mostly matrix products, so no library can train it faster
than the machine multiplies matrices; a library's ratio to its peers says little there, its fraction of this
limit says how much is left. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one real
forward + backward of the model (matrix products only, as is the convention; embedding lookups and elementwise
work are memory-bound and not counted), so nothing is derived by hand from the layer sizes.
"""

from __future__ import annotations

import time

import torch
from torch import nn


def train_flops_per_sample(model: nn.Module, batch: object, batch_size: int) -> float:
    """Matmul FLOPs of one training step (forward + backward of the BCE loss) on ``batch``, per sample."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with FlopCounterMode(display=False) as counter:
        logits = model(batch)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.y)  # type: ignore[attr-defined]
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch_size


def matmul_flops_per_second(m: int = 256, k: int = 400, n: int = 400, seconds: float = 0.5,
                            repeats: int = 3) -> float:
    """Best of ``repeats`` timings of float32 ``[m, k] @ [k, n]`` products over ``seconds`` each, at the
    process's torch thread count: the shape of a 400-wide layer at batch 256, the benchmark's heaviest op."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    for _ in range(20):
        torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(repeats):
        count, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            for _ in range(20):
                torch.mm(a, b, out=out)
            count += 20
        best = max(best, 2.0 * m * k * n * count / elapsed)
    return best
