"""Learning-rate schedules: linear warmup, then constant, linear or cosine decay to zero.

Why our own and not ``transformers.get_scheduler``: the engine must not import transformers (a CTR-only run
never needs it), and the three shapes the papers use fit in one function whose values a test can check by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ctrbench.trainconfig import SCHEDULES


def warmup_steps(warmup: float, total_steps: int) -> int:
    """``warmup`` below 1 is a fraction of the planned steps (0.1 = the first tenth), from 1 on a step count."""
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    return int(round(warmup * total_steps)) if warmup < 1 else int(warmup)


def lr_factor(schedule: str, warmup: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate before optimizer step ``step`` (0-based).

    Warmup rises linearly from 1/(warmup+1) to 1 so the first step already learns; decay reaches 0 at
    ``total_steps`` (the planned maximum: early stopping may end a run before the rate gets low).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; one of {', '.join(SCHEDULES)}")
    decay_steps = max(total_steps - warmup, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = min((step - warmup) / decay_steps, 1.0)
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
