"""Cost accounting: one code path for parameters and inference time, whatever the method."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from ctrbench.cost import parameter_counts, time_per_batch


def test_parameter_counts_total_trainable_and_shared_once():
    shared = nn.Linear(3, 4)  # 16
    frozen = nn.Linear(4, 2)  # 10
    frozen.requires_grad_(False)
    model = nn.ModuleDict({"a": shared, "b": shared, "c": frozen})
    assert parameter_counts(model) == (26, 16)


def test_time_per_batch_is_the_median_of_warm_calls():
    durations = iter([0.05, 0.001, 0.003, 0.002])  # warm-up slow, then 1, 3, 2 ms

    calls = []

    def call():
        d = next(durations)
        calls.append(d)
        time.sleep(d)

    ms = time_per_batch(call, torch.device("cpu"), repeats=3)
    assert len(calls) == 4  # one warm-up, three timed
    assert 1.9 <= ms < 10  # the median (2 ms plus sleep overshoot), not the 50 ms warm-up nor a mean


def test_slow_calls_stop_at_the_budget_but_are_timed_at_least_once():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.03)

    ms = time_per_batch(slow, torch.device("cpu"), repeats=20, budget_seconds=0.05)
    assert 2 <= len(calls) - 1 <= 3 and ms == pytest.approx(30, abs=25)
    calls.clear()
    time_per_batch(slow, torch.device("cpu"), repeats=20, budget_seconds=0.0)
    assert len(calls) == 2  # warm-up plus one timed call
    calls.clear()
    time_per_batch(slow, torch.device("cpu"), repeats=20, budget_seconds=0.0, warm=True)
    assert len(calls) == 1  # the caller has just run this inference: no warm-up call
