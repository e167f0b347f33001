"""The `clickprompt` method: tokenize → PA-MLM pretraining (a cached stage) → finetune with or without the PLM.

Stages are keyed by everything they depend on, so a compatibility grid or an ablation that varies only the
finetuning reuses one tokenization and one pretraining run per (data, CTR backbone, PLM, K, mode, seed).
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrbench.context import RunContext, predictions_of
from ctrbench.results import Predictions
from ctrbench.text import IGNORE, TokenTable, mask_tokens, maskable, token_cache_key
from ctrbench_clickprompt.config import ClickPromptConfig
from ctrbench_clickprompt.diagnostic import GATE, ValueTokens, alignment_diagnostic
from ctrbench_clickprompt.model import ClickPromptModel

log = logging.getLogger(__name__)


def pretrain_pamlm(ctx: RunContext, model: ClickPromptModel, cfg: ClickPromptConfig, out_dir: Path) -> None:
    """Prompt-augmented MLM (§3.5.1): CTR model + generator + PLM trained jointly to recover masked tokens.

    One engine phase without a validation monitor (pretraining has no AUC to select on). Two parameter groups:
    the PLM at ``pretrain_lr``, the CTR model and generator at ``pretrain_ctr_lr`` (the authors' split; equal
    by default). AdamW's weight decay is torch's default 0.01, as this stage has always used (its cached
    results stay valid). The alignment diagnostic is computed on held-out rows and stored with the weights.
    """
    trainer = ctx.trainer
    model.to(ctx.device)
    rows = pretrain_rows(ctx, cfg)
    special = sorted(model.plm.tokenizer.all_special_ids)
    mask_gen = torch.Generator().manual_seed(ctx.seed + 1)
    values = ValueTokens(ctx.data, model.plm.tokenizer) if cfg.mask_values_only else None

    def loss(batch: Any) -> torch.Tensor | None:
        ids, mask = model.text(batch)
        candidates = maskable(ids, mask, special)
        if values is not None:
            candidates &= values.flags(batch.idx, ids)
        corrupted, labels = mask_tokens(ids, candidates, mask_token_id=model.plm.mask_token_id,
                                        vocab_size=model.plm.vocab_size, mask_prob=cfg.mask_prob,
                                        generator=mask_gen)
        if not (labels != IGNORE).any():
            return None  # nothing selected in this batch: no step
        return model.mlm_loss(batch, corrupted, mask, labels)

    phase = trainer.phase("PA-MLM", trainer.row_source(ctx.data, rows, cfg.pretrain_batch_size), loss,
                          pamlm_param_groups(model, cfg), model=model, epochs=cfg.pretrain_epochs,
                          lr=cfg.pretrain_lr, weight_decay=0.01, schedule=cfg.pretrain_schedule,
                          warmup=cfg.pretrain_warmup)
    report = trainer.engine.run(phase)
    torch.save({"ctr": model.ctr.state_dict(), "generator": model.generator.state_dict(),
                "plm": model.plm.state_dict()}, out_dir / "weights.pt")
    history = [{"epoch": h["epoch"], "mlm_loss": h["train_loss"]} for h in report.history]
    info: dict[str, Any] = {"history": history, "seconds": report.train_seconds, "samples": len(rows)}
    if cfg.diagnostic_rows:
        held_out = held_out_rows(ctx, cfg.diagnostic_rows)
        diag = alignment_diagnostic(model, ctx.data, held_out, trainer.device_data(ctx.data),
                                    mask_prob=cfg.mask_prob, seed=ctx.seed)
        info["alignment"] = diag.to_dict()
        log.info("%s PA-MLM alignment on %d held-out rows: ID tokens true %.3f / shuffled %.3f / none %.3f nats "
                 "(gap %.3f ± %.3f, gate %.2f); %d of %d q dimensions constant", trainer.run_name, diag.rows,
                 diag.true_id, diag.shuffled_id, diag.none_id, diag.id_gap, diag.id_gap_se, GATE, diag.q_constant,
                 diag.q_dims)
    (out_dir / "pretrain.json").write_text(json.dumps(info, indent=2))


def pamlm_param_groups(model: ClickPromptModel, cfg: ClickPromptConfig) -> list[dict[str, Any]]:
    """The PLM at ``pretrain_lr``; CTR model and prompt generator at ``pretrain_ctr_lr`` (heads and α are not
    used by PA-MLM and stay out). One group when the two rates are equal, as before the split existed."""
    plm_ids = {id(p) for p in model.plm.parameters()}
    params = [p for n, p in model.named_parameters() if not n.startswith("plm_head") and n != "alpha"]
    if cfg.pretrain_ctr_lr is None or cfg.pretrain_ctr_lr == cfg.pretrain_lr:
        return [{"params": params}]
    return [{"params": [p for p in params if id(p) in plm_ids], "lr": cfg.pretrain_lr},
            {"params": [p for p in params if id(p) not in plm_ids], "lr": cfg.pretrain_ctr_lr}]


def pretrain_rows(ctx: RunContext, cfg: ClickPromptConfig) -> torch.Tensor:
    """Train rows (or train + validation rows: texts only, PA-MLM reads no label), subsampled with the run's
    seed to ``pretrain_max_samples``."""
    if cfg.pretrain_rows == "train":
        return ctx.trainer.train_rows(ctx.data, max_samples=cfg.pretrain_max_samples)
    rows = torch.from_numpy(np.concatenate([np.asarray(ctx.data.splits["train"]),
                                            np.asarray(ctx.data.splits["valid"])]).astype(np.int64))
    n = cfg.pretrain_max_samples
    if n is not None and n < len(rows):
        pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(ctx.seed))
        rows = rows[pick[:n]].sort().values
    return rows


def held_out_rows(ctx: RunContext, n: int) -> torch.Tensor:
    """A fixed (seed 0, the data alone) subset of test rows: the same rows for every stage of a dataset."""
    test = np.asarray(ctx.data.splits["test"], dtype=np.int64)
    if n < len(test):
        test = np.sort(np.random.default_rng(0).permutation(test)[:n])
    return torch.from_numpy(test)


def row_tokens(ctx: RunContext, plm: Any, max_length: int) -> TokenTable:
    """Every row's "field is value." text, tokenized once per (data, tokenizer, max length): a cached stage."""
    key = token_cache_key(ctx.data, plm, texts="row", max_length=max_length)
    stage = ctx.stage("text-tokens", key,
                      lambda d: TokenTable.for_rows(ctx.data, plm, max_length, key=key).save(d))
    return TokenTable.load(stage, key=key)


class ClickPrompt:
    """Method object; `run` is called once per RunSpec."""

    def __init__(self, config: ClickPromptConfig) -> None:
        self.config = config

    def _stage_base(self, ctx: RunContext) -> dict[str, Any]:
        return {"data": ctx.data.fingerprint, "plm": [ctx.spec.plm.name, ctx.spec.plm.config] if ctx.spec.plm else None}

    def run(self, ctx: RunContext) -> Predictions:
        cfg = self.config
        plm = ctx.build_plm()
        base = self._stage_base(ctx)
        tokens = row_tokens(ctx, plm, cfg.max_length)

        def fresh_model() -> ClickPromptModel:
            return ClickPromptModel(ctx.build_ctr(), plm, tokens, num_prompts=cfg.num_prompts,
                                    prompt_mode=cfg.prompt_mode, use_prompt=cfg.use_prompt,
                                    alpha_init=cfg.alpha_init)

        state: dict[str, Any] | None = None
        pretrain_info: dict[str, Any] = {}
        if cfg.pretrain:
            key = {**base, "ctr": [ctx.spec.ctr.name, ctx.spec.ctr.config], "seed": ctx.seed,
                   "grad_clip": ctx.trainer.config.grad_clip, **cfg.pretrain_key()}
            stage_dir = ctx.stage("clickprompt-pamlm", key, lambda d: pretrain_pamlm(ctx, fresh_model(), cfg, d))
            state = torch.load(stage_dir / "weights.pt", map_location="cpu", weights_only=True)
            pretrain_info = json.loads((stage_dir / "pretrain.json").read_text())

        if cfg.finetune == "without_plm":
            ctr = ctx.build_ctr()  # exactly the backbone class: inference cost is the backbone's
            ctr.load_state_dict(state["ctr"])
            report = ctx.trainer.fit(ctr, ctx.data)
            preds = predictions_of(ctx, ctr, report.train_seconds, report.epochs_run)
        else:
            model = fresh_model()
            if state is not None:
                model.ctr.load_state_dict(state["ctr"])
                model.generator.load_state_dict(state["generator"])
                model.plm.load_state_dict(state["plm"])
            report = ctx.trainer.fit(model, ctx.data, params=self._param_groups(model))
            preds = predictions_of(ctx, model, report.train_seconds, report.epochs_run)
            preds.extra["alpha"] = float(model.alpha.detach())
        preds.extra["best_epoch"] = float(report.best_epoch)
        if pretrain_info:
            preds.extra["pretrain_seconds"] = float(pretrain_info["seconds"])
            preds.extra["pretrain_final_mlm_loss"] = float(pretrain_info["history"][-1]["mlm_loss"])
            for k, v in pretrain_info.get("alignment", {}).items():  # the stage's alignment diagnostic
                if k in ("true", "shuffled", "none", "true_id", "shuffled_id", "none_id", "id_gap", "id_gap_se",
                         "q_constant_fraction"):
                    preds.extra[f"pamlm_{k}"] = float(v)
        return preds

    def _param_groups(self, model: ClickPromptModel) -> list[dict[str, Any]]:
        """CTR part, generator, heads and α at ``train.lr``; the PLM at ``plm_lr`` (0 = frozen)."""
        plm_params = list(model.plm.parameters())
        plm_ids = {id(p) for p in plm_params}
        groups: list[dict[str, Any]] = [{"params": [p for p in model.parameters() if id(p) not in plm_ids]}]
        if self.config.plm_lr > 0:
            groups.append({"params": plm_params, "lr": self.config.plm_lr})
        else:
            for p in plm_params:
                p.requires_grad_(False)
        return groups


def clickprompt(**config: Any) -> ClickPrompt:
    """Factory registered as `clickprompt`; its keyword arguments are `ClickPromptConfig`'s fields."""
    return ClickPrompt(ClickPromptConfig(**config))


clickprompt.__signature__ = inspect.signature(ClickPromptConfig)  # type: ignore[attr-defined]
