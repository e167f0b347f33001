"""`Trainer`: the run-level front of the engine — a run's data, its train/eval rows, CTR fitting and inference.

Methods fit CTR models with `Trainer.fit` (one phase with the validation-AUC monitor) and build other phases
(pretraining, alignment, LLM finetuning) with `Trainer.phase`; all of them run in `ctrbench.engine`'s one loop,
so optimisation is identical for every method (docs/architecture.md). Batches are gathered with index tensors
from arrays already on the device (no DataLoader, no per-sample Python work); memory-mapped datasets are
gathered batch by batch instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ctrbench.cost import INFER_ROWS, parameter_counts, time_per_batch
from ctrbench.data.types import CTRData
from ctrbench.engine import (
    DeviceData,
    Engine,
    NullReporter,
    Phase,
    PhaseReport,
    Reporter,
    RowSource,
    Source,
    ValidationAUC,
    l2_regularizer,
    seed_everything,
)
from ctrbench.engine.sparse import sparse_gradients, sparse_tables, without
from ctrbench.errors import RunError
from ctrbench.models.base import Batch
from ctrbench.trainconfig import TRAIN_CHOICES, TRAIN_KEYS, TrainConfig

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Batch], torch.Tensor]
FitReport = PhaseReport

__all__ = ["TRAIN_CHOICES", "TRAIN_KEYS", "DeviceData", "FitReport", "NullReporter", "Reporter", "TrainConfig",
           "Trainer", "count_parameters", "eval_positions", "resolve_device", "seed_everything"]




def eval_positions(n: int, max_samples: int | None) -> np.ndarray:
    """Sorted positions ``0..n-1`` to score; a seeded (0) random subset of ``max_samples`` when that is smaller."""
    if max_samples is None or max_samples >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(0).permutation(n)[:max_samples]).astype(np.int64)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"--device {device} requested but CUDA is not available (torch {torch.__version__})")
    return torch.device(device)


def default_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(model(batch).float(), batch.y)


class Trainer:
    """Fits a model whose ``forward(batch) -> logit[B]`` on a dataset's train split, through the engine."""

    def __init__(self, config: TrainConfig, device: torch.device, reporter: Reporter | None = None,
                 run_name: str = "run", seed: int = 0) -> None:
        self.config = config
        self.device = device
        self.reporter = reporter or NullReporter()
        self.run_name = run_name
        self.seed = seed
        self.engine = Engine(device, amp=config.amp, reporter=self.reporter, run_name=run_name, seed=seed,
                             cpu_amp=config.cpu_amp)
        self._cached: tuple[int, DeviceData] | None = None

    # -- data ---------------------------------------------------------------------------------------
    def device_data(self, data: CTRData) -> DeviceData:
        if self._cached is None or self._cached[0] != id(data):
            self._cached = (id(data), DeviceData(data, self.device))
        return self._cached[1]

    def train_rows(self, data: CTRData, max_samples: int | None | str = "train") -> torch.Tensor:
        """The training rows: all, or a seeded (run seed) random subset of ``train.max_samples`` (the few-shot /
        subsample knob; pass ``max_samples`` to subsample for another phase, e.g. a pretraining stage)."""
        rows = torch.from_numpy(np.array(data.splits["train"], dtype=np.int64))  # a copy: splits may be read-only
        n = self.config.max_samples if max_samples == "train" else max_samples
        if n is not None and n < len(rows):
            gen = torch.Generator().manual_seed(self.seed)
            rows = rows[torch.randperm(len(rows), generator=gen)[:n]].sort().values
        return rows

    def eval_positions(self, data: CTRData, split: str) -> np.ndarray:
        """Positions within ``split`` that are scored: all, or with ``eval_max_samples`` a random subset fixed by
        the dataset alone (seed 0, not the run's seed), so every run of a suite is scored on the same rows and
        paired tests stay paired. For methods too slow to score a whole split on a CPU (causal LMs)."""
        return eval_positions(len(data.splits[split]), self.config.eval_max_samples)

    def row_source(self, data: CTRData, rows: torch.Tensor, batch_size: int | None = None) -> RowSource:
        return RowSource(self.device_data(data), rows, batch_size or self.config.batch_size)

    def batches(self, dd: DeviceData, rows: torch.Tensor, batch_size: int,
                gen: torch.Generator | None = None) -> Iterator[Batch]:
        return RowSource(dd, rows, batch_size).epoch(gen)

    def autocast(self) -> torch.autocast:
        """The training steps' mixed precision (CUDA amp; bf16 on the CPU with ``cpu_amp``), for a method whose
        scoring is too costly in float32 (the causal LMs) — its final logits must still be float32 products
        (``ctrbench_plm.yes_no.answer_logits``); `predict` itself scores in float32."""
        return self.engine.autocast()

    # -- phases -------------------------------------------------------------------------------------
    def phase(self, name: str, source: Source, loss: Callable[[Any], torch.Tensor | None],
              params: Any, model: nn.Module | None = None, monitor: ValidationAUC | None = None,
              **overrides: Any) -> Phase:
        """A phase with the run's ``train.*`` settings (epochs, lr, weight decay, clipping, schedule, warmup);
        ``overrides`` replace any of them for this phase (a pretraining stage's own epochs and lr). With ``model``
        the ``train.*`` L2 regularisers apply to it (pass ``regularizer=None`` to switch them off)."""
        cfg = self.config
        settings = {"epochs": cfg.epochs, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                    "grad_clip": cfg.grad_clip, "schedule": cfg.schedule, "warmup": cfg.warmup, **overrides}
        if model is not None and "regularizer" not in settings:  # train.embedding/net_regularizer, 0 = none
            settings["regularizer"] = l2_regularizer(model, cfg.embedding_regularizer, cfg.net_regularizer)
        return Phase(name=name, source=source, loss=loss, params=params, model=model, monitor=monitor, **settings)

    def valid_monitor(self, model: nn.Module, data: CTRData, predict: Callable[[], np.ndarray] | None = None,
                      trainable_only: bool = False, positions: np.ndarray | None = None) -> ValidationAUC:
        """Early stopping on validation AUC with ``train.patience``; ``predict`` defaults to `Trainer.predict`."""
        y_valid = np.asarray(data.y[data.splits["valid"]])
        predict = predict or (lambda: self.predict(model, data, "valid"))
        return ValidationAUC(predict, y_valid, self.config.patience, trainable_only, positions)

    # -- fit ----------------------------------------------------------------------------------------
    def fit(self, model: nn.Module, data: CTRData, loss_fn: LossFn = default_loss,
            params: list[nn.Parameter] | list[dict[str, Any]] | None = None,
            forward: Callable[[nn.Module, Batch], torch.Tensor] | None = None) -> FitReport:
        """Train with early stopping on validation AUC and restore the best weights.

        ``params`` may be AdamW parameter groups (``[{"params": [...], "lr": 3e-5}, ...]``): ClickPrompt
        finetunes its PLM part with a smaller learning rate than the CTR part. ``forward`` is how
        validation predictions are computed when it is not ``model(batch)``.
        """
        model.to(self.device)
        source = self.row_source(data, self.train_rows(data))
        groups = params if params is not None else [p for p in model.parameters() if p.requires_grad]
        monitor = self.valid_monitor(model, data, lambda: self.predict(model, data, "valid", forward))
        tables = sparse_tables(model) if self.config.sparse_embeddings else []
        with sparse_gradients(tables) as sparse:
            phase = self.phase("train", source, lambda batch: loss_fn(model, batch), without(groups, sparse),
                               model=model, monitor=monitor, sparse_params=sparse)
            return self.engine.run(phase)

    # -- inference ----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module, data: CTRData, split: str,
                forward: Callable[[nn.Module, Batch], torch.Tensor] | None = None,
                batch_size: int | None = None) -> np.ndarray:
        """Click probabilities for a split, in the split's row order (batches of ``train.eval_batch_size``
        unless ``batch_size`` is given).

        In float32 even when training runs under mixed precision: a logit from a bf16 matmul has 8 significant
        bits, so nearby scores tie (a bf16 DNN scored 7,286 test rows with ~1,000 distinct values) and AUC is
        partly a coin toss over ties. Scoring is a small share of a run's time."""
        model.eval()
        dd = self.device_data(data)
        rows = torch.from_numpy(np.array(data.splits[split], dtype=np.int64))
        outs = []
        for batch in self.batches(dd, rows, batch_size or self.config.eval_batch_size):
            logit = forward(model, batch) if forward else model(batch)
            outs.append(torch.sigmoid(logit.float()).cpu())
        return torch.cat(outs).numpy().astype(np.float64) if outs else np.zeros(0)

    @torch.no_grad()
    def time_inference(self, model: nn.Module, data: CTRData, batch_size: int = INFER_ROWS, repeats: int = 20,
                       forward: Callable[[nn.Module, Batch], torch.Tensor] | None = None) -> float:
        """Median milliseconds per batch of ``batch_size`` test rows (ClickPrompt Table 8's measure), through
        `ctrbench.cost.time_per_batch`, the code path every method's inference time goes through."""
        model.eval()
        dd = self.device_data(data)
        rows = torch.as_tensor(np.asarray(data.splits["test"][:batch_size]), dtype=torch.long)
        batch = dd.batch(rows)

        def call() -> torch.Tensor:  # the precision `predict` scores in
            return forward(model, batch) if forward else model(batch)

        return time_per_batch(call, self.device, repeats)


def count_parameters(model: nn.Module) -> int:
    return parameter_counts(model)[0]
