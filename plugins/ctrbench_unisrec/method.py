"""The `unisrec` method: item-text embeddings (a cached stage) → contrastive pretraining (a cached stage) → CTR
fine-tuning of the adaptor and a prediction head over the run's CTR backbone.

Stage 1, ``unisrec-item-emb``: the frozen PLM reads every item's text once (its [CLS] state, the authors'
``emb_type=CLS``), and once more with words dropped for the word-drop augmentation; keyed by the data, the PLM and
the texts, so every seed, backbone and knob of a grid reuses it and the PLM is not even loaded when it is cached.
Stage 2, ``unisrec-pretrain``: adaptor + Transformer trained with ℓ_S-I + λ·ℓ_S-S on (history, next liked item)
pairs of the training split. Then `Trainer.fit` with BCE, early stopping on validation AUC.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrbench.context import RunContext, predictions_of
from ctrbench.engine import IndexSource
from ctrbench.results import Predictions
from ctrbench.text import item_texts
from ctrbench_unisrec.config import UniSRecConfig
from ctrbench_unisrec.layers import chronological_items
from ctrbench_unisrec.model import UniSRec, UniSRecCTR

HISTORY = "history"
TEXT_BATCH = 64


@torch.no_grad()
def encode_texts(plm: Any, texts: list[str], max_length: int, device: torch.device) -> np.ndarray:
    """float32[N, hidden]: the frozen PLM's pooled state of each text (row 0, the padding item, stays zero).
    The PLM is in eval mode and under ``no_grad``: it is read, never trained."""
    plm.to(device).eval()
    out = np.zeros((len(texts), plm.hidden_size), dtype=np.float32)
    length = min(max_length, plm.max_text_length)
    for start in range(1, len(texts), TEXT_BATCH):
        idx = list(range(start, min(start + TEXT_BATCH, len(texts))))
        ids, mask = plm.tokenize([texts[i] for i in idx], length)
        out[idx] = plm.pooled(plm.encode(ids, mask), mask).float().cpu().numpy()
    return out


def word_dropped(texts: list[str], ratio: float, seed: int = 0) -> list[str]:
    """Each word of each text kept with probability 1 − ``ratio`` (the authors' ``word_drop_ratio``)."""
    rng = np.random.default_rng(seed)
    return [" ".join(w for w in t.split(" ") if rng.random() > ratio) for t in texts]


class UniSRecMethod:
    """Method object; `run` is called once per RunSpec."""

    def __init__(self, config: UniSRecConfig) -> None:
        self.config = config

    def item_embeddings(self, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
        cfg = self.config
        texts = item_texts(ctx.data)
        key = {"data": ctx.data.fingerprint, "plm": [ctx.spec.plm.name, ctx.spec.plm.config] if ctx.spec.plm else None,
               "texts": hashlib.sha256(json.dumps(texts).encode()).hexdigest(), "max_length": cfg.max_length,
               "word_drop_ratio": cfg.word_drop_ratio}

        def build(out: Path) -> None:
            plm = ctx.build_plm()
            np.save(out / "plm.npy", encode_texts(plm, texts, cfg.max_length, ctx.device))
            if cfg.word_drop_ratio > 0:
                np.save(out / "plm_aug.npy", encode_texts(plm, word_dropped(texts, cfg.word_drop_ratio), cfg.max_length,
                                                          ctx.device))

        folder = ctx.stage("unisrec-item-emb", key, build)
        aug = folder / "plm_aug.npy"
        return (torch.from_numpy(np.load(folder / "plm.npy")),
                torch.from_numpy(np.load(aug)) if aug.exists() else None, key)

    def pretrain(self, ctx: RunContext, model: UniSRec, out: Path) -> None:
        """ℓ_S-I + λ·ℓ_S-S over (history, next liked item): the training rows clicked (y = 1) with a history."""
        cfg, data, trainer = self.config, ctx.data, ctx.trainer
        model.to(ctx.device)
        rows = trainer.train_rows(data, max_samples=None)
        history = np.asarray(data.sequences[HISTORY])[rows.numpy()]
        rows = rows[torch.from_numpy((np.asarray(data.y)[rows.numpy()] > 0.5) & (history[:, 0] != 0))]
        n = cfg.pretrain_max_samples
        if n is not None and n < len(rows):
            rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(ctx.seed))[:n]].sort().values
        if len(rows) == 0:
            raise ValueError("unisrec: no clicked training row with a history to pretrain on")
        dd, item_col = trainer.device_data(data), data.field_index(data.item_field)
        gen = torch.Generator().manual_seed(ctx.seed + 1)
        parts: dict[str, float] = {}

        def collate(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            batch = dd.batch(rows[idx])
            return chronological_items(batch.sequences[HISTORY]), batch.x[:, item_col]

        def loss(b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            seq_item, seq_seq = model.pretrain_loss(*b, gen)
            parts.update(seq_item=float(seq_item.detach()), seq_seq=float(seq_seq.detach()))
            return seq_item + cfg.seq_seq_weight * seq_seq

        phase = trainer.phase("UniSRec pretrain", IndexSource(len(rows), cfg.pretrain_batch_size, collate), loss,
                              list(model.parameters()), model=model, epochs=cfg.pretrain_epochs, lr=cfg.pretrain_lr,
                              weight_decay=0.0, schedule="constant", warmup=0.0, regularizer=None)
        report = trainer.engine.run(phase)
        torch.save(model.state_dict(), out / "unisrec.pt")
        (out / "pretrain.json").write_text(json.dumps({
            "history": report.history, "seconds": report.train_seconds, "samples": len(rows),
            "last_batch": parts}, indent=2))

    def run(self, ctx: RunContext) -> Predictions:
        cfg, data = self.config, ctx.data
        if HISTORY not in data.sequences:
            raise ValueError(f"unisrec: dataset '{data.name}' has no '{HISTORY}' sequence (history_length > 0)")
        plm_emb, plm_aug, emb_key = self.item_embeddings(ctx)
        max_length = int(np.asarray(data.sequences[HISTORY]).shape[1])

        def fresh() -> UniSRec:
            torch.manual_seed(ctx.seed)
            return UniSRec(plm_emb, plm_aug, max_length, cfg)

        unisrec = fresh()
        info: dict[str, Any] = {}
        if cfg.pretrain:
            key = {"item_emb": emb_key, "seed": ctx.seed, "grad_clip": ctx.trainer.config.grad_clip,
                   **cfg.pretrain_key()}
            stage = ctx.stage("unisrec-pretrain", key, lambda d: self.pretrain(ctx, fresh(), d))
            unisrec.load_state_dict(torch.load(stage / "unisrec.pt", map_location="cpu", weights_only=True))
            info = json.loads((stage / "pretrain.json").read_text())
            if cfg.freeze_encoder:
                for p in unisrec.encoder.encoder_parameters():
                    p.requires_grad_(False)
        model = UniSRecCTR(unisrec, ctx.build_ctr(num_extra_fields=2), data.field_index(data.item_field), HISTORY)
        report = ctx.trainer.fit(model, data)
        preds = predictions_of(ctx, model, report.train_seconds, report.epochs_run)
        preds.extra["best_epoch"] = float(report.best_epoch)
        if info:
            preds.extra["pretrain_seconds"] = float(info["seconds"])
            preds.extra["pretrain_final_loss"] = float(info["history"][-1]["train_loss"])
        return preds


def unisrec(**config: Any) -> UniSRecMethod:
    """Factory registered as `unisrec`; its keyword arguments are `UniSRecConfig`'s fields."""
    return UniSRecMethod(UniSRecConfig(**config))


unisrec.__signature__ = inspect.signature(UniSRecConfig)  # type: ignore[attr-defined]
