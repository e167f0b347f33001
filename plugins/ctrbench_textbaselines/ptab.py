"""PTab (Liu et al., "PTab: Using the Pre-trained Language Model for Modeling Tabular Data", 2022, arXiv:2209.08060).

Three stages, as the paper names them:

1. Modality transformation (MT): a row becomes "label: value" phrases in field order, joined by spaces
   ("age: 25 gender: M occupation: student ..."). Built here token by token from per-field pieces, so the
   position of every value token is known exactly (`PTabTokens.values`).
2. Masked-language fine-tuning (MF, a cached stage): BERT's MLM on those texts, 15% of the candidate tokens
   selected (80% [MASK], 10% random, 10% kept), cross-entropy on the selected positions; candidates are every
   non-special token (``mask_scope="text"``) or the value tokens only (``"values"``).
3. Classification fine-tuning (CF): the MF-tuned PLM with a head on its [CLS] state, finetuned on the labels.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctrbench.context import RunContext, predictions_of
from ctrbench.data.types import CTRData
from ctrbench.models.base import Batch
from ctrbench.results import Predictions
from ctrbench.text import IGNORE, TokenTable, label, mask_tokens, maskable, token_cache_key, tokenizer_of
from ctrbench.text.tokens import id_dtype
from ctrbench_textbaselines.common import TextClassifier, plm_ref
from ctrbench_textbaselines.config import PTabConfig

SEPARATOR = ":"  # "label: value" (the paper's "age:18 sex:male" example; BERT splits the colon off either way)


def phrase_pieces(data: CTRData, tokenizer: Any) -> list[tuple[list[int], list[list[int]]]]:
    """Per categorical field: the token ids of ``"<label>:"`` and of each vocabulary value (index 0 included).

    BERT's WordPiece splits on whitespace and punctuation before sub-words, so the concatenated pieces are
    exactly the tokens of the joined text (tests check this against the tokenizer on the whole text).
    """
    tok = tokenizer_of(tokenizer)
    out = []
    for f in data.fields:
        if f.kind != "categorical":
            continue
        head = tok(f"{label(data, f)}{SEPARATOR}", add_special_tokens=False)["input_ids"]
        vocab = data.vocab.get(f.name) or [str(i) for i in range(f.vocab_size)]
        values = tok([str(v) for v in vocab], add_special_tokens=False)["input_ids"] if vocab else []
        out.append((list(head), [list(v) for v in values]))
    return out


def ptab_text(data: CTRData, row: int) -> str:
    """The row's MT text (for reading and for tests): ``"label: value label: value ..."``."""
    parts = []
    for j, f in enumerate(data.fields):
        if f.kind == "categorical":
            vocab = data.vocab.get(f.name) or []
            i = int(data.X[row, j])
            parts.append(f"{label(data, f)}{SEPARATOR} {vocab[i] if i < len(vocab) else i}")
    return " ".join(parts)


def special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single text (BERT: [CLS] and [SEP])."""
    tok = tokenizer_of(tokenizer)
    body = tok("a", add_special_tokens=False)["input_ids"]
    full = tok("a")["input_ids"]
    for start in range(len(full) - len(body) + 1):
        if full[start:start + len(body)] == body:
            return list(full[:start]), list(full[start + len(body):])
    raise ValueError(f"ptab: cannot find the text inside {type(tok).__name__}'s special tokens")


@dataclass
class PTabTokens:
    """Every row's MT text as a `TokenTable`, plus ``values`` (bool [N, L]): positions holding value tokens."""

    table: TokenTable
    values: np.ndarray

    @classmethod
    def build(cls, data: CTRData, tokenizer: Any, max_length: int, key: dict[str, Any] | None = None) -> PTabTokens:
        tok = tokenizer_of(tokenizer)
        pieces = phrase_pieces(data, tok)
        columns = [j for j, f in enumerate(data.fields) if f.kind == "categorical"]
        prefix, suffix = special_frame(tok)  # ([CLS]), ([SEP]) for BERT
        body_max = max_length - len(prefix) - len(suffix)
        start = len(prefix)
        n = data.num_samples
        ids = np.full((n, max_length), tok.pad_token_id, dtype=id_dtype(len(tok)))
        values = np.zeros((n, max_length), dtype=bool)
        lengths = np.zeros(n, dtype=np.uint16 if max_length > 255 else np.uint8)
        X = np.asarray(data.X)
        for r in range(n):
            body: list[int] = []
            flags: list[bool] = []
            for (head, vals), j in zip(pieces, columns, strict=True):
                v = vals[int(X[r, j])]
                body += head + v
                flags += [False] * len(head) + [True] * len(v)
            body, flags = body[:body_max], flags[:body_max]
            full = prefix + body + suffix
            ids[r, :len(full)] = full
            values[r, start:start + len(flags)] = flags
            lengths[r] = len(full)
        side = getattr(tok, "padding_side", "right")
        if side != "right":
            raise ValueError(f"ptab: tokenizer {type(tok).__name__} pads on the {side}; PTab texts are right-padded")
        return cls(TokenTable(ids, lengths, pad_token_id=tok.pad_token_id, key=key), values)

    def save(self, folder: Path) -> None:
        np.save(folder / "values.npy", self.values)
        self.table.save(folder)

    @classmethod
    def load(cls, folder: Path, key: dict[str, Any]) -> PTabTokens:
        return cls(TokenTable.load(folder, key=key), np.load(folder / "values.npy", mmap_mode="r"))

    def value_flags(self, rows: torch.Tensor, width: int, device: torch.device) -> torch.Tensor:
        """bool [B, width]: the value positions of ``rows`` (the first ``width`` columns, as a trimmed gather)."""
        flags = np.asarray(self.values[np.asarray(rows.cpu())][:, :width])
        return torch.from_numpy(flags).to(device)


def candidates(tokens: PTabTokens, rows: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, special: list[int],
               scope: str) -> torch.Tensor:
    """bool [B, T]: the positions MF may select. "text": every real non-special token; "values": those that
    are also value tokens. Special tokens and padding never are."""
    allowed = maskable(ids, mask, special)
    if scope == "values":
        allowed &= tokens.value_flags(rows, ids.shape[1], ids.device)
    return allowed


def mlm_loss(plm: Any, corrupted: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the PLM's MLM head over the selected positions (``labels != IGNORE``)."""
    selected = labels != IGNORE
    hidden = plm.encode(corrupted, mask)
    return nn.functional.cross_entropy(plm.mlm_head(hidden[selected]).float(), labels[selected])


def masked_fine_tuning(ctx: RunContext, plm: Any, tokens: PTabTokens, cfg: PTabConfig, out: Path) -> None:
    """MF: one engine phase over the training rows' texts (no labels read), its own AdamW settings; stores the
    PLM's weights and the loss history."""
    trainer = ctx.trainer
    plm.to(ctx.device)
    special = sorted(tokenizer_of(plm).all_special_ids)
    gen = torch.Generator().manual_seed(ctx.seed + 1)
    rows = trainer.train_rows(ctx.data, max_samples=cfg.pretrain_max_samples)

    def loss(batch: Batch) -> torch.Tensor | None:
        ids, mask = tokens.table.gather(batch.idx, ctx.device, trim=True)
        allowed = candidates(tokens, batch.idx, ids, mask, special, cfg.mask_scope)
        corrupted, labels = mask_tokens(ids, allowed, mask_token_id=plm.mask_token_id, vocab_size=plm.vocab_size,
                                        mask_prob=cfg.mask_prob, generator=gen)
        if not (labels != IGNORE).any():
            return None
        return mlm_loss(plm, corrupted, mask, labels)

    phase = trainer.phase("PTab MF", trainer.row_source(ctx.data, rows, cfg.pretrain_batch_size), loss,
                          list(plm.parameters()), model=plm, epochs=cfg.pretrain_epochs, lr=cfg.pretrain_lr,
                          weight_decay=cfg.pretrain_weight_decay, schedule=cfg.pretrain_schedule, warmup=0.0,
                          regularizer=None)
    report = trainer.engine.run(phase)
    torch.save(plm.state_dict(), out / "plm.pt")
    (out / "mf.json").write_text(json.dumps({"seconds": report.train_seconds, "rows": len(rows),
                                             "history": [h["train_loss"] for h in report.history]}))




class PTab:
    """Method object; `run` is called once per RunSpec."""

    def __init__(self, config: PTabConfig) -> None:
        self.config = config

    def tokens(self, ctx: RunContext, plm: Any) -> PTabTokens:
        key = token_cache_key(ctx.data, plm, texts="ptab-row", max_length=self.config.max_length,
                              separator=SEPARATOR)
        folder = ctx.stage("ptab-tokens", key,
                           lambda d: PTabTokens.build(ctx.data, plm, self.config.max_length, key).save(d))
        return PTabTokens.load(folder, key)

    def run(self, ctx: RunContext) -> Predictions:
        cfg = self.config
        plm = ctx.build_plm()
        tokens = self.tokens(ctx, plm)
        extra: dict[str, float] = {}
        if cfg.pretrain:
            key = {"data": ctx.data.fingerprint, "plm": plm_ref(ctx), "seed": ctx.seed,
                   # MF overrides every train.* setting but these two (and reads no label, no validation)
                   "grad_clip": ctx.trainer.config.grad_clip, "amp": ctx.trainer.config.amp,
                   **cfg.pretrain_key()}
            stage = ctx.stage("ptab-mf", key, lambda d: masked_fine_tuning(ctx, ctx.build_plm(), tokens, cfg, d))
            plm.load_state_dict(torch.load(stage / "plm.pt", map_location="cpu", weights_only=True))
            info = json.loads((stage / "mf.json").read_text())
            extra.update(mf_seconds=float(info["seconds"]), mf_final_loss=float(info["history"][-1]))
        torch.manual_seed(ctx.seed)  # the head's init must not depend on whether MF ran in this process
        model = TextClassifier(plm, tokens.table, hidden=cfg.head_hidden, dropout=cfg.dropout).to(ctx.device)
        groups = [{"params": list(model.head.parameters())}, {"params": list(plm.parameters()), "lr": cfg.plm_lr}]
        report = ctx.trainer.fit(model, ctx.data, params=groups)
        preds = predictions_of(ctx, model, report.train_seconds, report.epochs_run)
        preds.extra.update(best_epoch=float(report.best_epoch), **extra)
        return preds


def create(**config: Any) -> PTab:
    """Factory registered as `ptab`; its keyword arguments are `PTabConfig`'s fields."""
    return PTab(PTabConfig(**config))


create.__signature__ = inspect.signature(PTabConfig)  # type: ignore[attr-defined]
