"""`llamarec`: LlamaRec (Yue et al., "LlamaRec: Two-Stage Recommendation using Large Language Models for Ranking",
2023) adapted to CTR as SLLM4CTR ran it: "first trains traditional CTR baseline and incorporates the result
generated from baseline into the prompt" (SLLM4CTR, Appendix A.5).

Stage 1 (`id_model_scores`, a cached stage: every run of the same data, backbone, seed and ``id_*`` settings
reuses it): the run's ``ctr:`` backbone trained with BCE on the training rows, early-stopped on validation AUC
(what ``method: ctr`` runs), then its click probability of every dataset row. With ``cross_fit_folds: k`` >= 2
the stage's training rows are cut into k seeded folds and each fold's rows are scored by a model trained on the
other folds; validation and test rows keep the scores of the model trained on all of them.

Stage 2: a causal LM (or T5) with LoRA finetuned on LlamaRec's prompt of each training row, the row's stage-1
probability written in it (`ctrbench_lmbaselines.prompts.LlamaRecPrompts`), with the LM loss on the response
(LlamaRec's ``llm_train_on_inputs=False``) and Yes/No scoring as TallRec does (`PromptedYesNoLLM`).
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrbench.context import RunContext
from ctrbench.data.types import CTRData
from ctrbench.engine import PhaseReport
from ctrbench.stats import auc
from ctrbench.trainer import TrainConfig, Trainer, default_loss
from ctrbench_lmbaselines.common import PromptedYesNoLLM, Prompts
from ctrbench_lmbaselines.config import LlamaRecConfig
from ctrbench_lmbaselines.prompts import LlamaRecPrompts

log = logging.getLogger(__name__)

STAGE = "llamarec-id-model"


# -- stage 1: the ID model ----------------------------------------------------------------------------------

def id_trainer(ctx: RunContext, cfg: LlamaRecConfig) -> Trainer:
    """Stage 1's trainer: the ``id_*`` knobs over `TrainConfig`'s defaults (what the ID baselines run), the run's
    ``train.amp``, ``train.cpu_amp`` and ``train.embedding_init``."""
    run = ctx.trainer.config
    config = TrainConfig(**{**cfg.id_train(), "amp": run.amp, "cpu_amp": run.cpu_amp,
                            "embedding_init": run.embedding_init})
    return Trainer(config, ctx.device, ctx.reporter, run_name=f"{ctx.trainer.run_name} (ID model)", seed=ctx.seed)


def train_id_model(ctx: RunContext, trainer: Trainer, rows: torch.Tensor, name: str) -> tuple[Any, PhaseReport]:
    """A fresh ``ctr:`` backbone trained with BCE on ``rows``, early-stopped on validation AUC (`Trainer.fit`'s
    phase, on the rows given)."""
    model = ctx.build_ctr().to(ctx.device)
    monitor = trainer.valid_monitor(model, ctx.data)
    phase = trainer.phase(name, trainer.row_source(ctx.data, rows), lambda batch: default_loss(model, batch),
                          [p for p in model.parameters() if p.requires_grad], model=model, monitor=monitor)
    return model, trainer.engine.run(phase)


@torch.no_grad()
def predict_rows(trainer: Trainer, model: Any, data: CTRData, rows: np.ndarray) -> np.ndarray:
    """Click probabilities of dataset ``rows``, in their order."""
    model.eval()
    out = [torch.sigmoid(model(batch).float()).cpu()
           for batch in trainer.batches(trainer.device_data(data), torch.as_tensor(rows, dtype=torch.long),
                                        trainer.config.eval_batch_size)]
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """A seeded assignment of ``n`` rows to ``folds`` folds of (nearly) equal size."""
    return np.random.default_rng(seed).permutation(np.arange(n) % folds)


def fit_id_stage(ctx: RunContext, cfg: LlamaRecConfig, out: Path) -> None:
    """Stage 1 into ``out``: ``scores.npy`` (every row's click probability, cross-fitted on the training rows when
    asked), ``ctr.pt`` (the model trained on all the stage's rows) and ``stage.json``."""
    trainer = id_trainer(ctx, cfg)
    data = ctx.data
    rows = trainer.train_rows(data)  # id_max_samples: a seeded subset; all training rows by default
    model, report = train_id_model(ctx, trainer, rows, f"ID model ({len(rows)} rows)")
    scores = predict_rows(trainer, model, data, np.arange(data.num_samples))
    torch.save(model.state_dict(), out / "ctr.pt")
    info: dict[str, Any] = {"rows": len(rows), "seconds": report.train_seconds, "best_epoch": report.best_epoch,
                            "best_valid_auc": report.best_valid_auc, "folds": []}
    k = cfg.cross_fit_folds
    if k >= 2:
        fold = torch.from_numpy(fold_ids(len(rows), k, ctx.seed))
        for j in range(k):
            held_out = rows[fold == j]
            fold_model, fold_report = train_id_model(ctx, trainer, rows[fold != j],
                                                     f"ID model, fold {j + 1}/{k} ({len(rows) - len(held_out)} rows)")
            scores[held_out.numpy()] = predict_rows(trainer, fold_model, data, held_out.numpy())
            info["seconds"] += fold_report.train_seconds
            info["folds"].append({"held_out": len(held_out), "best_valid_auc": fold_report.best_valid_auc})
    np.save(out / "scores.npy", scores)
    (out / "stage.json").write_text(json.dumps(info, indent=2))


def id_stage_key(ctx: RunContext, cfg: LlamaRecConfig) -> dict[str, Any]:
    """Everything stage 1 depends on."""
    spec = ctx.spec
    return {"data": ctx.data.fingerprint, "ctr": [spec.ctr.name, spec.ctr.config] if spec.ctr else None,
            "seed": ctx.seed, "train": asdict(id_trainer(ctx, cfg).config), "folds": cfg.cross_fit_folds}


def id_model_scores(ctx: RunContext, cfg: LlamaRecConfig) -> tuple[np.ndarray, dict[str, Any], Path]:
    """(every row's stage-1 click probability, the stage's info, its folder), computed once per key."""
    folder = ctx.stage(STAGE, id_stage_key(ctx, cfg), lambda out: fit_id_stage(ctx, cfg, out))
    return np.load(folder / "scores.npy"), json.loads((folder / "stage.json").read_text()), folder


# -- stage 2: the LLM -----------------------------------------------------------------------------------------

class LlamaRec(PromptedYesNoLLM):
    """LlamaRec as a CTR predictor; see the module docstring."""

    def __init__(self, config: LlamaRecConfig) -> None:
        super().__init__(config.llm_config(), finetune="lora", train_defaults=config.train_defaults())
        self.llamarec_config = config
        self._scores: np.ndarray | None = None
        self._stage_info: dict[str, Any] = {}

    def prompts(self, ctx: RunContext) -> Prompts:
        cfg = self.llamarec_config
        self._scores, self._stage_info, _ = id_model_scores(ctx, cfg)
        return LlamaRecPrompts(ctx.data, cfg.template, cfg.history_items, self._scores, cfg.score_digits)

    def extra_metrics(self, ctx: RunContext) -> dict[str, float]:
        """The stage-1 model's own AUC on the run's scored rows (what the LLM adds to it), and its cost."""
        extra = {"id_train_seconds": float(self._stage_info.get("seconds", 0.0)),
                 "id_best_epoch": float(self._stage_info.get("best_epoch", 0))}
        data = ctx.data
        for split in ("valid", "test"):
            rows = np.asarray(data.splits[split])[ctx.trainer.eval_positions(data, split)]
            y = np.asarray(data.y[rows], dtype=np.float64)
            if self._scores is not None and 0 < y.sum() < len(y):
                extra[f"id_{split}_auc"] = auc(y, self._scores[rows])
        return extra


def llamarec(**config: Any) -> LlamaRec:
    """Factory registered as `llamarec`; its keyword arguments are `LlamaRecConfig`'s fields."""
    return LlamaRec(LlamaRecConfig(**config))


llamarec.__signature__ = inspect.signature(LlamaRecConfig)  # type: ignore[attr-defined]
