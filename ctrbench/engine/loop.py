"""The one training loop: every method's every objective runs through `Engine.run`.

Why one loop: a leaderboard compares methods, so optimisation details — AdamW, clipping, mixed precision and its
grad scaler, the NaN guard, seeding, progress, timing and model selection — must be the same code for all of
them. What differs between methods is data (a `Source`), an objective (``loss(batch)``), which parameters train
at which rate, and whether validation AUC selects the epoch: that is a `Phase`. Methods with several objectives
(ClickPrompt's PA-MLM then finetuning, CELA's pretraining then alternating alignment and fusion) run several
phases, in sequence (``run`` one after another) or alternating (``run_phases(..., rounds=R)``), each with its
own optimizer that persists across rounds.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ctrbench.engine.clip import clip_grad_norm
from ctrbench.engine.flat import FlatGroups
from ctrbench.engine.fused_step import DirectFusedStep
from ctrbench.engine.monitor import ValidationAUC
from ctrbench.engine.schedule import lr_factor, warmup_steps
from ctrbench.engine.sources import Source
from ctrbench.engine.sparse import SparseTables
from ctrbench.errors import RunError

log = logging.getLogger(__name__)

Params = Sequence[nn.Parameter] | Sequence[dict[str, Any]]


class Reporter(Protocol):
    """Progress sink; the CLI passes a rich-backed one, library callers may pass ``NullReporter``."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def finish(self) -> None: ...


class NullReporter:
    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


def seed_everything(seed: int) -> torch.Generator:
    """Seed every RNG a run touches; returns the generator used for batch order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


@dataclass
class Phase:
    """One objective over one source.

    ``loss(batch)`` returns the scalar to minimise, or None to skip the batch (e.g. an MLM batch where nothing
    was masked). ``params`` are parameters or AdamW parameter groups (a group may carry its own ``lr``: ClickPrompt
    finetunes its PLM at a smaller rate than the CTR part). ``warmup`` < 1 is a fraction of the planned steps.
    ``model`` is put in train mode at each epoch (the monitor's predictions switch it to eval). ``regularizer``
    is added to every batch's loss (FuxiCTR's embedding/net L2, `engine.regularizers`). ``sparse_params`` are
    embedding tables with sparse gradients, stepped by a lazy Adam instead of AdamW (`engine.sparse`); they must
    not also be in ``params``.
    """

    name: str
    source: Source
    loss: Callable[[Any], torch.Tensor | None]
    params: Params
    epochs: int
    lr: float
    model: nn.Module | None = None
    weight_decay: float = 0.0
    grad_clip: float | None = None
    schedule: str = "constant"
    warmup: float = 0.0
    monitor: ValidationAUC | None = None
    regularizer: Callable[[], torch.Tensor] | None = None
    sparse_params: Sequence[nn.Parameter] = ()

    def __post_init__(self) -> None:
        if self.monitor is not None and self.model is None:
            raise ValueError(f"phase '{self.name}': a monitor needs model= (the weights it snapshots and restores)")


@dataclass
class PhaseReport:
    """What a phase did; ``best_epoch`` is the epoch whose weights the model holds now; ``flat``: whether its
    optimizer stepped on contiguous parameters (engine/flat.py)."""

    name: str
    best_epoch: int
    epochs_run: int
    best_valid_auc: float
    train_seconds: float
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    flat: bool = False


class _Running:
    """A phase's optimizer, schedule, batch-order generator and counters, kept across alternation rounds."""

    def __init__(self, phase: Phase, gen: torch.Generator, device: torch.device, scaler_enabled: bool,
                 rounds: int = 1, direct_step: bool = True) -> None:
        self.phase = phase
        self.gen = gen
        # fused=True: one kernel per step instead of a table-sized temporary per operation; on CPU this doubles
        # throughput at batch 256 for embedding-heavy models (benchmarks/README.md, "Where the time goes")
        self.opt = torch.optim.AdamW(list(phase.params), lr=phase.lr, weight_decay=phase.weight_decay,
                                     fused=device.type in ("cpu", "cuda"))
        self.flat: FlatGroups | None = None  # set after the first backward when every parameter got a gradient
        self.flat_checked = False
        self.sparse = SparseTables(phase.sparse_params, phase.lr) if phase.sparse_params else None
        self.optimizers: list[torch.optim.Optimizer] = [self.opt] + ([self.sparse.optimizer] if self.sparse else [])
        self.scaler = torch.amp.GradScaler("cuda", enabled=scaler_enabled)
        # the AdamW kernel without torch.optim's per-step Python (engine/fused_step.py); a grad scaler's
        # unscaling and inf checks stay torch's
        self.direct = (DirectFusedStep(self.opt) if direct_step and not scaler_enabled
                       and DirectFusedStep.supports(self.opt) else None)
        self.schedules: list[torch.optim.lr_scheduler.LambdaLR] = []
        if phase.schedule != "constant" or phase.warmup:
            total = rounds * phase.epochs * phase.source.num_batches()  # the whole alternation, not one round
            factor = lr_factor(phase.schedule, warmup_steps(phase.warmup, total), total)
            self.schedules = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in self.optimizers]
        self.epochs_run = 0
        self.steps = 0
        self.seconds = 0.0
        self.done = False
        self.history: list[dict[str, float]] = []

    def trainable(self) -> list[nn.Parameter]:
        """The AdamW parameters (flat or not); the sparse tables are `sparse`'s."""
        if self.flat is not None:
            return self.flat.trainable()
        return [p for g in self.opt.param_groups for p in g["params"]]


class Engine:
    """Runs phases on one device for one run (its name goes into every error and progress line)."""

    def __init__(self, device: torch.device, amp: bool = True, reporter: Reporter | None = None,
                 run_name: str = "run", seed: int = 0, cpu_amp: bool = False, flat_params: bool = True,
                 direct_step: bool = True) -> None:
        self.device = device
        self.flat_params = flat_params
        self.direct_step = direct_step
        self.amp = amp
        self.cpu_amp = cpu_amp
        self.reporter = reporter or NullReporter()
        self.run_name = run_name
        self.seed = seed

    # -- mixed precision ----------------------------------------------------------------------------
    def amp_dtype(self) -> torch.dtype | None:
        """bf16 where the GPU has it, else fp16 (with a grad scaler); on the CPU bf16 only with ``cpu_amp``
        (it changes the numerics a CPU board was made with); None with ``amp: false``."""
        if not self.amp:
            return None
        if self.device.type == "cpu":
            return torch.bfloat16 if self.cpu_amp else None
        if self.device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def autocast(self) -> torch.autocast:
        """The training steps' mixed precision, for inference code of methods (a no-op where it is off)."""
        dtype = self.amp_dtype()
        return torch.autocast(self.device.type, dtype=dtype or torch.float16, enabled=dtype is not None)

    # -- training -----------------------------------------------------------------------------------
    def run(self, phase: Phase) -> PhaseReport:
        return self.run_phases([phase])[0]

    def run_phases(self, phases: Sequence[Phase], rounds: int = 1) -> list[PhaseReport]:
        """Each round runs every phase for its ``epochs`` in order; ``rounds`` > 1 alternates them.

        Seeds every RNG once (the run's seed); phase *i* orders its batches with a generator seeded
        ``seed + i``, so adding a later phase never changes an earlier one's batches.
        """
        gen0 = seed_everything(self.seed)
        scaler_on = self.amp_dtype() == torch.float16
        running = []
        for i, phase in enumerate(phases):
            gen = gen0 if i == 0 else torch.Generator().manual_seed(self.seed + i)
            running.append(_Running(phase, gen, self.device, scaler_on, rounds, self.direct_step))
        for _ in range(rounds):
            for state in running:
                if not state.done:
                    self._epochs(state)
        reports = []
        for state in running:
            phase = state.phase
            if phase.monitor is not None and phase.model is not None:
                phase.monitor.restore(phase.model)
            best = phase.monitor.best_epoch if phase.monitor else state.epochs_run
            best_auc = phase.monitor.best_auc if phase.monitor else math.nan
            reports.append(PhaseReport(phase.name, best, state.epochs_run, best_auc, state.seconds, state.steps,
                                       state.history, flat=state.flat is not None))
        return reports

    def _epochs(self, state: _Running) -> None:
        t0 = time.perf_counter()
        dtype = self.amp_dtype()
        if state.flat is not None:
            state.flat.attach()
        try:
            self._epoch_loop(state, dtype)
        finally:
            if state.flat is not None:
                state.flat.detach()  # parameters own their storage again between phases (engine/flat.py)
        state.seconds += time.perf_counter() - t0

    def _epoch_loop(self, state: _Running, dtype: torch.dtype | None) -> None:
        phase = state.phase
        for _ in range(phase.epochs):
            state.epochs_run += 1
            epoch = state.epochs_run
            if phase.model is not None:
                phase.model.train()
            self.reporter.start(phase.source.num_batches(), f"{self.run_name} {phase.name} epoch {epoch}")
            total, count = 0.0, 0
            try:
                for step, batch in enumerate(phase.source.epoch(state.gen)):
                    with self._cast(dtype):
                        loss = phase.loss(batch)
                    if loss is None:
                        continue
                    if phase.regularizer is not None:
                        loss = loss + phase.regularizer()
                    value = float(loss.detach())  # one device sync a step, for the check and the mean alike
                    if not math.isfinite(value):
                        raise RunError(f"run {self.run_name}: loss became {value} at epoch {epoch} step {step} "
                                       f"of phase '{phase.name}'; lower the learning rate or check the inputs")
                    self._step(state, loss)
                    n = _batch_len(batch)
                    total += value * n
                    count += n
                    self.reporter.advance()
            finally:
                self.reporter.finish()
            record = {"epoch": epoch, "train_loss": total / max(count, 1)}
            stop = False
            if phase.monitor is not None and phase.model is not None:
                metrics, stop = phase.monitor.update(phase.model, epoch)
                record.update(metrics)
            state.history.append(record)
            log.info("%s %s epoch %d: %s", self.run_name, phase.name, epoch,
                     ", ".join(f"{k} {v:.5f}" for k, v in record.items() if k != "epoch"))
            if stop:
                state.done = True
                break

    def _cast(self, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
        """The step's autocast; without mixed precision no context at all (a disabled autocast still costs
        ~7 µs a step on this EPYC, ~1% of an FM's step)."""
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _step(self, state: _Running, loss: torch.Tensor) -> None:
        opt, scaler, sparse = state.opt, state.scaler, state.sparse
        if state.flat is not None:
            state.flat.zero_grad()
        else:
            opt.zero_grad(set_to_none=True)
        if sparse is not None:
            sparse.zero_grad()
        scaler.scale(loss).backward()
        if sparse is not None:
            sparse.check(self.run_name)
        if not state.flat_checked:
            state.flat_checked = True
            if self.flat_params and FlatGroups.applies(opt):
                state.flat = FlatGroups(opt)
                state.flat.attach()
        if state.phase.grad_clip:
            for o in state.optimizers:
                scaler.unscale_(o)
            grads = [p.grad for p in state.trainable() if p.grad is not None]
            clip_grad_norm(grads + (sparse.coalesced_values() if sparse else []), state.phase.grad_clip)
        for o in state.optimizers:
            if o is opt and state.direct is not None:
                state.direct.step()
            else:
                scaler.step(o)
        scaler.update()
        for schedule in state.schedules:
            schedule.step()
        state.steps += 1


def _batch_len(batch: Any) -> int:
    """Rows in a batch, for the row-weighted mean training loss: a tuple's first member (``(ids, mask)``), 1 for
    batches without a length."""
    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    try:
        return len(batch)
    except TypeError:
        return 1
