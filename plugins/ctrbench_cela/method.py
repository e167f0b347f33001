"""The `cela` method: DAP → (ROMA → MF²) × R, every step a cached stage (Wang et al., CELA, Fig. 2).

Stages (``<store>/_stages/<name>-<hash>``), each keyed by exactly what it depends on; a key names the stages it
reads by their folder names (``ref``), so an ablation, a backbone grid or another suite reuses every stage it
shares with a run already done:

- ``text-tokens``: item texts tokenized (data, tokenizer, length);
- ``cela-dap``: the PLM after DAP (data, PLM, seed, tokens, DAP knobs, clipping);
- ``cela-id``: the ID model of Eq. 7 (data, CTR backbone, ``train:``, seed);
- ``cela-text``: the text-embedding table of an unaligned PLM (w/o ROMA, and ROMA w/o PLM's input);
- ``cela-roma``: one ROMA round (the PLM and head it starts from, the ID stage it aligns to, ROMA knobs);
- ``cela-mf2``: one MF² model (its table, the CTR backbone, ``train:``, seed, MF² knobs).
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ctrbench.context import RunContext, predictions_of
from ctrbench.cost import parameter_counts
from ctrbench.hashing import content_hash
from ctrbench.results import Predictions
from ctrbench_cela import dap, encoder, roma
from ctrbench_cela.config import CELAConfig
from ctrbench_cela.items import (
    align_field_names,
    history_field,
    item_feature_index,
    item_tokens,
    popular_items,
    text_length,
)
from ctrbench_cela.mf2 import MF2Model

log = logging.getLogger(__name__)


def ref(name: str, key: dict[str, Any]) -> str:
    """A stage's folder name: what a later stage's key records about it."""
    return f"{name}-{content_hash(key)}"


@dataclass
class Stage:
    """A finished stage: its reference (for later keys) and folder."""

    ref: str
    dir: Path

    def info(self, name: str) -> dict[str, Any]:
        return json.loads((self.dir / name).read_text())


def run_stage(ctx: RunContext, name: str, key: dict[str, Any], fn: Any) -> Stage:
    return Stage(ref(name, key), ctx.stage(name, key, fn))


class CELA:
    """Method object; `run` is called once per RunSpec."""

    def __init__(self, config: CELAConfig) -> None:
        self.config = config

    # -- keys ---------------------------------------------------------------------------------------------
    def _ctr_key(self, ctx: RunContext) -> dict[str, Any]:
        """What any CTR training here depends on: data, backbone, the run's ``train:`` and seed."""
        return {"data": ctx.data.fingerprint, "ctr": [ctx.spec.ctr.name, ctx.spec.ctr.config],
                "train": ctx.spec.train, "seed": ctx.seed}

    def _plm_key(self, ctx: RunContext) -> dict[str, Any]:
        key = {"data": ctx.data.fingerprint, "plm": [ctx.spec.plm.name, ctx.spec.plm.config], "seed": ctx.seed}
        family = ctx.plugins.registry("plm").get(ctx.spec.plm.name).metadata.get("family")
        if family == "causal_lm":  # the adapters' shape and pooling; a masked LM's keys are unchanged
            key["causal"] = self.config.causal_key()
        return key

    # -- stages -------------------------------------------------------------------------------------------
    def id_model(self, ctx: RunContext) -> Stage:
        """Eq. 7: the run's backbone trained with BCE on the ID features alone (the DIN baseline's training)."""
        def fit(out: Path) -> None:
            ctr = ctx.build_ctr()
            report = ctx.trainer.fit(ctr, ctx.data)
            torch.save(ctr.embedding.state_dict(), out / "embedding.pt")
            total, trainable = parameter_counts(ctr)
            (out / "id.json").write_text(json.dumps({"seconds": report.train_seconds, "params": trainable,
                                                     "best_epoch": report.best_epoch,
                                                     "best_valid_auc": report.best_valid_auc}))

        return run_stage(ctx, "cela-id", self._ctr_key(ctx), fit)

    def build_plm(self, ctx: RunContext) -> Any:
        """The run's PLM as CELA trains it (`encoder.wrap`: a causal LM gets its LoRA adapters)."""
        return encoder.wrap(ctx.build_plm(), self.config, ctx.seed)

    def load_plm(self, ctx: RunContext, plm_stage: Stage | None) -> Any:
        plm = self.build_plm(ctx)
        if plm_stage is not None:
            encoder.load_state(plm, torch.load(plm_stage.dir / "plm.pt", map_location="cpu", weights_only=True))
        return plm

    def id_table(self, ctx: RunContext, id_stage: Stage, fields: list[str]) -> torch.Tensor:
        """Eq. 8 for every item, from a stage's saved embedding tables (the ID model's or an MF² model's)."""
        ctr = ctx.build_ctr()
        ctr.embedding.load_state_dict(torch.load(id_stage.dir / "embedding.pt", map_location="cpu",
                                                 weights_only=True))
        return roma.id_item_table(ctr, item_feature_index(ctx.data, fields), fields)

    def text_table(self, ctx: RunContext, tokens: Any, plm_ref: str, plm_stage: Stage | None) -> Stage:
        """The [CLS] table of an unaligned PLM (pretrained or after DAP), each item encoded once."""
        def encode(out: Path) -> None:
            plm = self.load_plm(ctx, plm_stage).to(ctx.device)
            torch.save(roma.encode_items(plm, tokens, ctx.device), out / "table.pt")

        return run_stage(ctx, "cela-text", {"plm": plm_ref, "tokens": content_hash(tokens.key)}, encode)

    def roma_round(self, ctx: RunContext, tokens: Any, plm_ref: str, plm_stage: Stage | None,
                   head_stage: Stage | None, id_stage: Stage, raw: Stage | None, r: int) -> Stage:
        """One ROMA round (Eq. 8–12) from the given PLM and head, aligned to ``id_stage``'s item table; saves the
        PLM, the head and the new text table (the raw [CLS] states of the aligned PLM)."""
        cfg = self.config
        fields = align_field_names(ctx.data, cfg.align_fields)
        key = {"plm": plm_ref, "head": head_stage.ref if head_stage else None, "id": id_stage.ref,
               "raw": raw.ref if raw else None, "round": r, "tokens": content_hash(tokens.key),
               "grad_clip": ctx.trainer.config.grad_clip, "seed": ctx.seed, **cfg.roma_key()}

        def align(out: Path) -> None:
            plm = self.load_plm(ctx, plm_stage)
            e_n = self.id_table(ctx, id_stage, fields)
            torch.manual_seed(ctx.seed)
            head = roma.ProjectionHead(plm.hidden_size, cfg.proj_hidden, e_n.shape[1], cfg.proj_layernorm)
            if head_stage is not None:
                head.load_state_dict(torch.load(head_stage.dir / "head.pt", map_location="cpu", weights_only=True))
            raw_table = torch.load(raw.dir / "table.pt", weights_only=True) if raw else None
            aligner = roma.Aligner(plm, head, tokens, raw_table)
            info = roma.align(ctx, aligner, e_n, popular_items(ctx.data, cfg.align_top), cfg)
            info["fields"] = fields
            if raw_table is None:
                table = roma.encode_items(plm, tokens, ctx.device)
            else:
                table = raw_table  # the PLM did not change
            with torch.no_grad():
                projected = head.to("cpu").eval()(table)
                projected[0] = 0.0
            tuned = sum(p.numel() for p in encoder.tunable_parameters(plm)) if info["plm_trained"] else 0
            info["plm_params"] = parameter_counts(plm)[0]
            info["trainable_params"] = sum(p.numel() for p in head.parameters()) + tuned
            roma.save(out, aligner, table, info)
            torch.save(projected, out / "projected.pt")

        return run_stage(ctx, "cela-roma", key, align)

    def mf2(self, ctx: RunContext, table_ref: str, table: torch.Tensor, id_stage: Stage | None) -> Stage:
        """One MF² model (Eq. 13–14) trained with BCE on the cached table; saves its weights and embeddings."""
        cfg = self.config
        key = {**self._ctr_key(ctx), "table": table_ref,
               "init": id_stage.ref if cfg.mf2_init == "dap" and id_stage else None, **cfg.mf2_key()}

        def fit(out: Path) -> None:
            model = self.build_mf2(ctx, table)
            if cfg.mf2_init == "dap" and id_stage is not None:  # the interaction layers change shape: tables only
                model.ctr.embedding.load_state_dict(torch.load(id_stage.dir / "embedding.pt", map_location="cpu",
                                                               weights_only=True))
            report = ctx.trainer.fit(model, ctx.data)
            torch.save(model.state_dict(), out / "model.pt")
            torch.save(model.ctr.embedding.state_dict(), out / "embedding.pt")
            (out / "mf2.json").write_text(json.dumps({"seconds": report.train_seconds, "epochs": report.epochs_run,
                                                      "best_epoch": report.best_epoch,
                                                      "best_valid_auc": report.best_valid_auc}))

        return run_stage(ctx, "cela-mf2", key, fit)

    def build_mf2(self, ctx: RunContext, table: torch.Tensor) -> MF2Model:
        history = history_field(ctx.data) if self.config.use_history else None
        ctr = ctx.build_ctr(num_extra_fields=1 + (history is not None))
        return MF2Model(ctr, table, ctx.data.field_index(ctx.data.item_field), history, self.config.fusion_hidden,
                        self.config.table_trainable)

    # -- orchestration --------------------------------------------------------------------------------------
    def run(self, ctx: RunContext) -> Predictions:
        cfg = self.config
        seconds: dict[str, float] = {"dap": 0.0, "id": 0.0, "roma": 0.0, "mf2": 0.0}
        extra: dict[str, float] = {}
        needs_id = cfg.roma or cfg.mf2_table == "id" or cfg.mf2_init == "dap"
        id_stage = self.id_model(ctx) if needs_id else None
        if id_stage is not None:
            seconds["id"] = id_stage.info("id.json")["seconds"]
            extra["id_params"] = float(id_stage.info("id.json")["params"])

        if cfg.mf2_table == "id":  # "MF² w/o text": the DAP ID model's item rows replace the text table
            table = self.id_table(ctx, id_stage, align_field_names(ctx.data, cfg.align_fields))
            final, tables = self.mf2(ctx, f"id:{id_stage.ref}:{cfg.align_fields}", table, id_stage), [table]
        else:
            final, tables = self._text_path(ctx, id_stage, seconds, extra)
        for name in ("dap", "roma"):
            extra[f"{name}_seconds"] = seconds[name]
        extra["id_seconds"] = seconds["id"]

        model = self.build_mf2(ctx, tables[-1])
        model.load_state_dict(torch.load(final.dir / "model.pt", map_location="cpu", weights_only=True))
        info = final.info("mf2.json")
        seconds["mf2"] += info["seconds"]
        # train_seconds is the MF² training (every round); DAP, ROMA and the ID model are stages
        # (``<stage>_seconds``, ctrbench.results.stage_seconds): an efficiency board's Total s is the paper's "Total"
        preds = predictions_of(ctx, model, seconds["mf2"], info["epochs"])
        preds.extra.update(extra)
        preds.extra["best_epoch"] = float(info["best_epoch"])
        preds.extra["mf2_params"] = float(preds.trainable_params)
        return preds

    def _text_path(self, ctx: RunContext, id_stage: Stage | None, seconds: dict[str, float],
                   extra: dict[str, float]) -> tuple[Stage, list[torch.Tensor]]:
        """DAP, then R rounds of ROMA → MF² (one MF² on the unaligned table without ROMA)."""
        cfg = self.config
        plm = self.build_plm(ctx)
        tokens = item_tokens(ctx, plm, text_length(plm, cfg.max_length))
        plm_ref = "pretrained:" + content_hash(self._plm_key(ctx))
        plm_stage: Stage | None = None
        extra["plm_params"] = float(parameter_counts(plm)[0])
        if cfg.dap:
            key = {**self._plm_key(ctx), "tokens": content_hash(tokens.key), "grad_clip": ctx.trainer.config.grad_clip,
                   **cfg.dap_key()}
            plm_stage = run_stage(ctx, "cela-dap", key, lambda out: dap.pretrain(ctx, plm, tokens, cfg, out))
            plm_ref = plm_stage.ref
            dap_info = plm_stage.info("dap.json")
            seconds["dap"] = dap_info["seconds"]
            if dap_info["history"]:
                extra["dap_final_loss"] = float(dap_info["history"][-1]["train_loss"])
            extra["dap_params"] = extra["plm_params"] + extra.get("id_params", 0.0)
        if not cfg.roma:
            text = self.text_table(ctx, tokens, plm_ref, plm_stage)
            table = torch.load(text.dir / "table.pt", weights_only=True)
            return self.mf2(ctx, text.ref, table, id_stage), [table]
        raw = self.text_table(ctx, tokens, plm_ref, plm_stage) if not cfg.roma_plm else None
        head_stage: Stage | None = None
        align_to = id_stage
        tables: list[torch.Tensor] = []
        final: Stage | None = None
        for r in range(1, cfg.rounds + 1):
            stage = self.roma_round(ctx, tokens, plm_ref, plm_stage, head_stage, align_to, raw, r)
            info = stage.info("roma.json")
            seconds["roma"] += info["seconds"]
            extra["roma_params"] = float(info["trainable_params"])
            if info["history"]:
                extra[f"roma{r}_final_loss"] = float(info["history"][-1]["train_loss"])
            for when in ("before", "after"):  # text→ID retrieval over all items (roma.retrieval)
                got = info.get(f"retrieval_{when}", {})
                if "recall@10" in got:
                    extra[f"roma{r}_recall10_{when}"] = float(got["recall@10"])
                    extra["roma_chance10"] = float(got["chance@10"])
            plm_ref, plm_stage, head_stage = stage.ref, stage, stage
            kind = cfg.table_kind
            table = torch.load(stage.dir / ("table.pt" if kind == "raw" else "projected.pt"), weights_only=True)
            tables.append(table)
            final = self.mf2(ctx, f"{kind}:{stage.ref}", table, id_stage)
            if r < cfg.rounds:
                seconds["mf2"] += final.info("mf2.json")["seconds"]
            align_to = final  # §4.4: the next round realigns to the new model's item table
        extra["rounds"] = float(cfg.rounds)
        assert final is not None
        return final, tables


def cela(**config: Any) -> CELA:
    """Factory registered as `cela`; its keyword arguments are `CELAConfig`'s fields."""
    return CELA(CELAConfig(**config))


cela.__signature__ = inspect.signature(CELAConfig)  # type: ignore[attr-defined]
