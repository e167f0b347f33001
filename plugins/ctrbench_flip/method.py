"""The `flip` method: field-aware row tokens (a cached stage) → FLIP pretraining, ICL + MTM + MLM (a cached
stage) → joint fine-tuning of the backbone and the PLM, selected on the fused prediction's validation AUC."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch

from ctrbench.context import RunContext, predictions_of
from ctrbench.results import Predictions
from ctrbench_flip import text
from ctrbench_flip.config import FLIPConfig
from ctrbench_flip.model import FLIPModel


class FLIP:
    """Method object; `run` is called once per RunSpec."""

    def __init__(self, config: FLIPConfig) -> None:
        self.config = config

    def pretrain(self, ctx: RunContext, model: FLIPModel, out: Path) -> None:
        """ICL + MTM + MLM, equally weighted (the authors' sum), over the training rows; AdamW with weight decay,
        a cosine schedule, no validation (pretraining has no AUC to select on)."""
        cfg, trainer = self.config, ctx.trainer
        model.to(ctx.device)
        rows = trainer.train_rows(ctx.data, max_samples=cfg.pretrain_max_samples)
        gen = torch.Generator().manual_seed(ctx.seed + 1)
        last: dict[str, float] = {}

        def loss(batch: Any) -> torch.Tensor | None:
            parts = model.pretrain_losses(batch, gen)
            last.update({k: float(v.detach()) for k, v in parts.items()})
            return sum(parts.values()) if parts else None

        params = [p for n, p in model.named_parameters() if not n.startswith("text_dense") and n != "alpha"]
        phase = trainer.phase("FLIP pretrain", trainer.row_source(ctx.data, rows, cfg.pretrain_batch_size), loss,
                              params, model=model, epochs=cfg.pretrain_epochs, lr=cfg.pretrain_lr,
                              weight_decay=cfg.pretrain_weight_decay, schedule="cosine", warmup=0.0, regularizer=None)
        report = trainer.engine.run(phase)
        torch.save({"ctr": model.ctr.state_dict(), "plm": model.plm.state_dict()}, out / "weights.pt")
        (out / "pretrain.json").write_text(json.dumps({"history": report.history, "seconds": report.train_seconds,
                                                       "samples": len(rows), "last_batch": last}, indent=2))

    def run(self, ctx: RunContext) -> Predictions:
        cfg, data = self.config, ctx.data
        plm = ctx.build_plm()
        length = min(cfg.max_length, plm.max_text_length)
        tok_key = text.key(data, plm, length)
        folder = ctx.stage("flip-tokens", tok_key, lambda d: text.FieldTokens.build(data, plm, length).save(d))
        tokens = text.FieldTokens.load(folder)

        def fresh(plm: Any) -> FLIPModel:
            ctr = ctx.build_ctr()  # seeds torch: the heads below are initialised the same way in every run
            return FLIPModel(ctr, plm, tokens, cfg)

        info: dict[str, Any] = {}
        model = fresh(plm)
        if cfg.pretrain:
            key = {"tokens": tok_key, "ctr": [ctx.spec.ctr.name, ctx.spec.ctr.config],
                   "plm": [ctx.spec.plm.name, ctx.spec.plm.config], "seed": ctx.seed,
                   "grad_clip": ctx.trainer.config.grad_clip, **cfg.pretrain_key()}
            stage = ctx.stage("flip-pretrain", key, lambda d: self.pretrain(ctx, fresh(ctx.build_plm()), d))
            state = torch.load(stage / "weights.pt", map_location="cpu", weights_only=True)
            model.ctr.load_state_dict(state["ctr"])
            model.plm.load_state_dict(state["plm"])
            info = json.loads((stage / "pretrain.json").read_text())
        plm_ids = {id(p) for p in model.plm.parameters()}
        pretrain_only = {id(p) for m in (model.rec_projection, model.text_projection, model.query, model.field_encoder,
                                         model.field_values, model.field_bias, model.mlm_head) for p in m.parameters()}
        groups: list[dict[str, Any]] = [{"params": [p for p in model.parameters()
                                                    if id(p) not in plm_ids and id(p) not in pretrain_only]}]
        if cfg.plm_lr > 0:
            groups.append({"params": list(model.plm.parameters()), "lr": cfg.plm_lr})
        else:
            model.plm.requires_grad_(False)
        report = ctx.trainer.fit(model, data, loss_fn=lambda m, batch: m.finetune_loss(batch), params=groups)
        preds = predictions_of(ctx, model, report.train_seconds, report.epochs_run)
        preds.extra.update(alpha=float(model.alpha.detach()), best_epoch=float(report.best_epoch))
        if info:
            preds.extra["pretrain_seconds"] = float(info["seconds"])
            preds.extra["pretrain_final_loss"] = float(info["history"][-1]["train_loss"])
            for k, v in info.get("last_batch", {}).items():
                preds.extra[f"pretrain_{k}_loss"] = float(v)
        return preds


def flip(**config: Any) -> FLIP:
    """Factory registered as `flip`; its keyword arguments are `FLIPConfig`'s fields."""
    return FLIP(FLIPConfig(**config))


flip.__signature__ = inspect.signature(FLIPConfig)  # type: ignore[attr-defined]
