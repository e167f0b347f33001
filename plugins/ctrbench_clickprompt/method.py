"""The `clickprompt` method: tokenize → PA-MLM pretraining (a cached stage) → finetune with or without the PLM.

Stages are keyed by everything they depend on, so a compatibility grid or an ablation that varies only the
finetuning reuses one tokenization and one pretraining run per (data, CTR backbone, PLM, K, mode, seed).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctrbench.context import RunContext, predictions_of
from ctrbench.data.text import render_rows
from ctrbench.errors import RunError
from ctrbench.results import Predictions
from ctrbench.trainer import seed_everything
from ctrbench_clickprompt.config import ClickPromptConfig
from ctrbench_clickprompt.masking import IGNORE, mask_tokens
from ctrbench_clickprompt.model import ClickPromptModel

log = logging.getLogger(__name__)


def tokenize_all(data: Any, plm: Any, max_length: int, out_dir: Path, chunk: int = 4096) -> None:
    """Every row's "field is value." text, tokenized once to fixed-width arrays [N, max_length]."""
    n = data.num_samples
    ids = np.full((n, max_length), plm.pad_token_id, dtype=np.int64)
    mask = np.zeros((n, max_length), dtype=np.int8)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        t_ids, t_mask = plm.tokenize(render_rows(data, rows), max_length=max_length)
        width = t_ids.shape[1]
        ids[rows, :width] = t_ids.cpu().numpy()
        mask[rows, :width] = t_mask.cpu().numpy()
    np.savez(out_dir / "tokens.npz", ids=ids, mask=mask)


def load_tokens(stage_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(stage_dir / "tokens.npz") as f:
        return torch.from_numpy(f["ids"]), torch.from_numpy(f["mask"].astype(np.int64))


def pretrain_pamlm(ctx: RunContext, model: ClickPromptModel, cfg: ClickPromptConfig, out_dir: Path) -> None:
    """Prompt-augmented MLM (§3.5.1): CTR model + generator + PLM trained jointly to recover masked tokens."""
    gen = seed_everything(ctx.seed)
    device = ctx.device
    model.to(device).train()
    trainer = ctx.trainer
    dd = trainer.device_data(ctx.data)
    rows = torch.as_tensor(np.asarray(ctx.data.splits["train"]), dtype=torch.long)
    if cfg.pretrain_max_samples is not None and cfg.pretrain_max_samples < len(rows):
        pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(ctx.seed))
        rows = rows[pick[:cfg.pretrain_max_samples]].sort().values
    params = [p for n, p in model.named_parameters() if not n.startswith("plm_head") and n != "alpha"]
    opt = torch.optim.AdamW(params, lr=cfg.pretrain_lr, fused=device.type in ("cpu", "cuda"))
    special = torch.tensor(sorted(model.plm.tokenizer.all_special_ids), device=device)
    mask_gen = torch.Generator().manual_seed(ctx.seed + 1)
    history, t0 = [], time.perf_counter()
    steps = math.ceil(len(rows) / cfg.pretrain_batch_size)
    for epoch in range(1, cfg.pretrain_epochs + 1):
        ctx.reporter.start(steps, f"PA-MLM epoch {epoch}/{cfg.pretrain_epochs}")
        total, count = 0.0, 0
        for batch in trainer.batches(dd, rows, cfg.pretrain_batch_size, gen):
            ids, mask = model.text(batch)
            maskable = mask.bool() & ~torch.isin(ids, special)
            corrupted, labels = mask_tokens(ids, maskable, mask_token_id=model.plm.mask_token_id,
                                            vocab_size=model.plm.vocab_size, mask_prob=cfg.mask_prob,
                                            generator=mask_gen)
            if not (labels != IGNORE).any():
                continue
            with trainer.autocast():
                loss = model.mlm_loss(batch, corrupted, mask, labels)
            if not torch.isfinite(loss):
                raise RunError(f"run {trainer.run_name}: PA-MLM loss became {loss.item()} at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, trainer.config.grad_clip or 1e9)
            opt.step()
            total += float(loss.detach())
            count += 1
            ctx.reporter.advance()
        ctx.reporter.finish()
        history.append({"epoch": epoch, "mlm_loss": total / max(count, 1)})
        log.info("%s PA-MLM epoch %d: loss %.4f", trainer.run_name, epoch, history[-1]["mlm_loss"])
    torch.save({"ctr": model.ctr.state_dict(), "generator": model.generator.state_dict(),
                "plm": model.plm.state_dict()}, out_dir / "weights.pt")
    (out_dir / "pretrain.json").write_text(json.dumps(
        {"history": history, "seconds": time.perf_counter() - t0, "samples": len(rows)}, indent=2))


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
        token_dir = ctx.stage("clickprompt-tokens", {**base, "max_length": cfg.max_length},
                              lambda d: tokenize_all(ctx.data, plm, cfg.max_length, d))
        tokens, token_mask = load_tokens(token_dir)

        def fresh_model() -> ClickPromptModel:
            return ClickPromptModel(ctx.build_ctr(), plm, tokens, token_mask, num_prompts=cfg.num_prompts,
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
