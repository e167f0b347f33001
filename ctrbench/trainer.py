"""The training loop every method shares.

Why one loop: the leaderboards compare methods, so batching, early stopping, seeding and timing must be
identical for all of them. Batches are gathered with index tensors from arrays already on the device (no
DataLoader, no per-sample Python work); memory-mapped datasets are gathered batch by batch instead.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ctrbench.data.types import CTRData
from ctrbench.errors import RunError
from ctrbench.models.base import Batch
from ctrbench.stats import auc as auc_score
from ctrbench.stats import logloss as logloss_score

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Batch], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; every key can be set in a suite under ``train:``."""

    epochs: int = 10
    batch_size: int = 256
    eval_batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 2
    grad_clip: float = 10.0
    max_samples: int | None = None
    eval_max_samples: int | None = None
    amp: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**d)


TRAIN_KEYS = {f.name: f.type for f in fields(TrainConfig)}


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


def eval_positions(n: int, max_samples: int | None) -> np.ndarray:
    """Sorted positions ``0..n-1`` to score; a seeded (0) random subset of ``max_samples`` when that is smaller."""
    if max_samples is None or max_samples >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(0).permutation(n)[:max_samples]).astype(np.int64)


def seed_everything(seed: int) -> torch.Generator:
    """Seed every RNG a run touches; returns the generator used for batch order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"--device {device} requested but CUDA is not available (torch {torch.__version__})")
    return torch.device(device)


class DeviceData:
    """The dataset's arrays as tensors on the device (or a memmap gathered per batch)."""

    def __init__(self, data: CTRData, device: torch.device) -> None:
        self.device = device
        self.in_memory = not isinstance(data.X, np.memmap)
        to = (lambda a: torch.as_tensor(np.asarray(a)).to(device)) if self.in_memory else (lambda a: a)
        self.X = to(data.X)
        self.y = to(data.y.astype(np.float32, copy=False))
        self.sequences = {k: to(v) for k, v in data.sequences.items()}

    def batch(self, idx: torch.Tensor) -> Batch:
        if self.in_memory:
            idx = idx.to(self.device)
            return Batch(self.X[idx], self.y[idx], idx, {k: v[idx] for k, v in self.sequences.items()})
        rows = np.sort(idx.numpy())  # sorted reads are sequential on disk
        get = lambda a: torch.from_numpy(np.asarray(a[rows])).to(self.device)  # noqa: E731
        return Batch(get(self.X), get(self.y).float(), torch.from_numpy(rows).to(self.device),
                     {k: get(v) for k, v in self.sequences.items()})


@dataclass
class FitReport:
    best_epoch: int
    epochs_run: int
    best_valid_auc: float
    train_seconds: float
    history: list[dict[str, float]]


def default_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(model(batch).float(), batch.y)


class Trainer:
    """Fits a model whose ``forward(batch) -> logit[B]`` on a dataset's train split."""

    def __init__(self, config: TrainConfig, device: torch.device, reporter: Reporter | None = None,
                 run_name: str = "run", seed: int = 0) -> None:
        self.config = config
        self.device = device
        self.reporter = reporter or NullReporter()
        self.run_name = run_name
        self.seed = seed
        self._cached: tuple[int, DeviceData] | None = None

    # -- data ---------------------------------------------------------------------------------------
    def device_data(self, data: CTRData) -> DeviceData:
        if self._cached is None or self._cached[0] != id(data):
            self._cached = (id(data), DeviceData(data, self.device))
        return self._cached[1]

    def train_rows(self, data: CTRData) -> torch.Tensor:
        rows = torch.from_numpy(np.array(data.splits["train"], dtype=np.int64))  # a copy: splits may be read-only
        n = self.config.max_samples
        if n is not None and n < len(rows):  # few-shot / subsample knob: a seeded random subset
            gen = torch.Generator().manual_seed(self.seed)
            rows = rows[torch.randperm(len(rows), generator=gen)[:n]].sort().values
        return rows

    def eval_positions(self, data: CTRData, split: str) -> np.ndarray:
        """Positions within ``split`` that are scored: all, or with ``eval_max_samples`` a random subset fixed by
        the dataset alone (seed 0, not the run's seed), so every run of a suite is scored on the same rows and
        paired tests stay paired. For methods too slow to score a whole split on a CPU (causal LMs)."""
        return eval_positions(len(data.splits[split]), self.config.eval_max_samples)

    def batches(self, dd: DeviceData, rows: torch.Tensor, batch_size: int,
                gen: torch.Generator | None = None) -> Iterator[Batch]:
        order = rows[torch.randperm(len(rows), generator=gen)] if gen is not None else rows
        for start in range(0, len(order), batch_size):
            yield dd.batch(order[start:start + batch_size])

    # -- autocast -----------------------------------------------------------------------------------
    def _amp(self) -> tuple[bool, torch.dtype]:
        use = self.config.amp and self.device.type == "cuda"
        dtype = torch.bfloat16 if use and torch.cuda.is_bf16_supported() else torch.float16
        return use, dtype

    def autocast(self) -> torch.autocast:
        """Mixed precision on CUDA (bf16 where supported), a no-op on CPU: for methods' own loops."""
        use, dtype = self._amp()
        return torch.autocast(self.device.type, dtype=dtype, enabled=use)

    # -- fit ----------------------------------------------------------------------------------------
    def fit(self, model: nn.Module, data: CTRData, loss_fn: LossFn = default_loss,
            params: list[nn.Parameter] | list[dict[str, Any]] | None = None,
            forward: Callable[[nn.Module, Batch], torch.Tensor] | None = None) -> FitReport:
        """Train with early stopping on validation AUC and restore the best weights.

        ``params`` may be AdamW parameter groups (``[{"params": [...], "lr": 3e-5}, ...]``): ClickPrompt
        finetunes its PLM part with a smaller learning rate than the CTR part. ``forward`` is how
        validation predictions are computed when it is not ``model(batch)``.
        """
        cfg = self.config
        gen = seed_everything(self.seed)
        model.to(self.device)
        dd = self.device_data(data)
        rows = self.train_rows(data)
        groups = params if params is not None else [p for p in model.parameters() if p.requires_grad]
        # fused=True: one kernel per step instead of a table-sized temporary per operation; on CPU this doubles
        # throughput at batch 256 for embedding-heavy models (benchmarks/README.md, "Where the time goes")
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                fused=self.device.type in ("cpu", "cuda"))
        trainable = [p for g in opt.param_groups for p in g["params"]]
        use_amp, amp_dtype = self._amp()
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
        best_auc, best_epoch, best_state, bad_epochs = -math.inf, 0, None, 0
        history: list[dict[str, float]] = []
        t0 = time.perf_counter()
        steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
        epoch = 0
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            self.reporter.start(steps_per_epoch, f"{self.run_name} epoch {epoch}/{cfg.epochs}")
            total, count = 0.0, 0
            for step, batch in enumerate(self.batches(dd, rows, cfg.batch_size, gen)):
                with torch.autocast(self.device.type, dtype=amp_dtype, enabled=use_amp):
                    loss = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise RunError(f"run {self.run_name}: loss became {loss.item()} at epoch {epoch} step {step}")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                total += float(loss.detach()) * len(batch)
                count += len(batch)
                self.reporter.advance()
            self.reporter.finish()
            valid_p = self.predict(model, data, "valid", forward)
            y_valid = np.asarray(data.y[data.splits["valid"]])
            v_auc = auc_score(y_valid, valid_p)
            history.append({"epoch": epoch, "train_loss": total / max(count, 1), "valid_auc": v_auc,
                            "valid_logloss": logloss_score(y_valid, valid_p)})
            log.info("%s epoch %d: train loss %.5f, valid AUC %.5f", self.run_name, epoch,
                     history[-1]["train_loss"], v_auc)
            if v_auc > best_auc:
                best_auc, best_epoch, bad_epochs = v_auc, epoch, 0
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            else:
                bad_epochs += 1
                if bad_epochs >= cfg.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        return FitReport(best_epoch, epoch, best_auc, time.perf_counter() - t0, history)

    # -- inference ----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module, data: CTRData, split: str,
                forward: Callable[[nn.Module, Batch], torch.Tensor] | None = None) -> np.ndarray:
        """Click probabilities for a split, in the split's row order."""
        model.eval()
        dd = self.device_data(data)
        rows = torch.from_numpy(np.array(data.splits[split], dtype=np.int64))
        use_amp, amp_dtype = self._amp()
        outs = []
        for batch in self.batches(dd, rows, self.config.eval_batch_size):
            with torch.autocast(self.device.type, dtype=amp_dtype, enabled=use_amp):
                logit = forward(model, batch) if forward else model(batch)
            outs.append(torch.sigmoid(logit.float()).cpu())
        return torch.cat(outs).numpy().astype(np.float64) if outs else np.zeros(0)

    @torch.no_grad()
    def time_inference(self, model: nn.Module, data: CTRData, batch_size: int = 128, repeats: int = 20,
                       forward: Callable[[nn.Module, Batch], torch.Tensor] | None = None) -> float:
        """Median milliseconds per batch of ``batch_size`` test rows (ClickPrompt Table 8's measure)."""
        model.eval()
        dd = self.device_data(data)
        rows = torch.as_tensor(np.asarray(data.splits["test"][:batch_size]), dtype=torch.long)
        batch = dd.batch(rows)
        call = (lambda: forward(model, batch)) if forward else (lambda: model(batch))
        call()  # warm-up
        times = []
        for _ in range(repeats):
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            call()
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t) * 1000)
        return float(np.median(times))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
