"""What a run costs, measured by one code path for every method: parameters, and inference time per 128 rows.

Why one path: an efficiency table (ClickPrompt Table 8) compares methods, so a method that extrapolated a whole
split's wall time (loading, the first slow call, padding of its last batch) would look slower than one timed on
warm batches. Every method hands `time_per_batch` a call that scores 128 test rows exactly as its inference does
(an LLM: tokenise and score the prompts in its evaluation batches); the median over warm repeats is reported.
Slow calls (an LLM on a CPU takes seconds per 128 prompts) get fewer repeats under a time budget, never fewer
than one after the warm-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

INFER_ROWS = 128


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameters, each shared tensor counted once."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return total, trainable


def time_per_batch(call: Callable[[], object], device: torch.device, repeats: int = 20,
                   budget_seconds: float = 10.0, warm: bool = False) -> float:
    """Median milliseconds of ``call()`` after one warm-up call; repeats stop early once ``budget_seconds`` of
    timed calls have passed (at least one timed call). ``warm``: the caller has just run the same inference (an
    LLM that scored the test split), so the warm-up call, which costs it a minute on a CPU, is skipped."""
    if not warm:
        call()  # warm-up: lazy initialisation, allocator, kernel selection
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (not times or spent < budget_seconds):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t
        times.append(elapsed * 1000)
        spent += elapsed
    return float(np.median(times))
