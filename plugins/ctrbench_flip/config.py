"""FLIP's knobs (torch-free, so `ctrbench validate` reads them without importing the model).

Defaults are the authors' (justarter/FLIP: ``pretrain_config.py``, ``run_script.py``, ``model/MaskCTR_ddp.py``,
``finetune_all.py``) unless the docstring says otherwise; docs/methods/baselines.md (FLIP section) lists each one
with its source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FLIPConfig:
    """Knobs of the `flip` method.

    ``pretrain``: run the alignment stage (ICL + MTM + MLM; ``use_icl``/``use_mtm``/``use_mlm`` switch each off,
    the paper's ablations). ``field_mask_ratio``/``text_mask_ratio``: share of fields masked per row on the ID
    side / the text side (0.15 each; at least one field). ``temperature``: of the instance contrastive loss
    (0.7, a dot product of the two 128-wide projections, as the authors' code computes it).
    ``projection_dim``: the contrastive projection heads (128); ``field_proj_size``: the per-field vectors that
    score a masked field's candidate values (32); ``head_dropout``: dropout in the projection and prediction heads
    (0.2). ``max_length``: tokens of a row text (100, the authors' MovieLens setting).
    ``pretrain_epochs`` (30), ``pretrain_lr`` (1e-4), ``pretrain_weight_decay`` (1e-3), ``pretrain_batch_size``
    (128, the authors' tiny-BERT setting), cosine schedule; ``pretrain_max_samples``: a seeded subset of the
    training rows (None: all). Fine-tuning: ``plm_lr`` (5e-5; the rest at ``train.lr``) and ``alpha_init`` (0,
    the fusion weight ŷ = σ(α·y_ID + (1 − α)·y_PLM)).
    """

    pretrain: bool = True
    use_icl: bool = True
    use_mtm: bool = True
    use_mlm: bool = True
    field_mask_ratio: float = 0.15
    text_mask_ratio: float = 0.15
    temperature: float = 0.7
    projection_dim: int = 128
    field_proj_size: int = 32
    head_dropout: float = 0.2
    max_length: int = 100
    pretrain_epochs: int = 30
    pretrain_lr: float = 1e-4
    pretrain_weight_decay: float = 1e-3
    pretrain_batch_size: int = 128
    pretrain_max_samples: int | None = None
    plm_lr: float = 5e-5
    alpha_init: float = 0.0

    def __post_init__(self) -> None:
        for name in ("field_mask_ratio", "text_mask_ratio", "head_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"flip: {name} must be in [0, 1), got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ValueError(f"flip: temperature must be > 0, got {self.temperature}")
        if self.pretrain and not (self.use_icl or self.use_mtm or self.use_mlm):
            raise ValueError("flip: pretrain=true needs at least one of use_icl, use_mtm, use_mlm")
        if self.max_length < 3:
            raise ValueError(f"flip: max_length must be at least 3, got {self.max_length}")

    def pretrain_key(self) -> dict[str, Any]:
        """What the pretraining stage depends on (fine-tuning knobs excluded, so finetunes share it)."""
        d = asdict(self)
        return {k: d[k] for k in ("use_icl", "use_mtm", "use_mlm", "field_mask_ratio", "text_mask_ratio",
                                  "temperature", "projection_dim", "field_proj_size", "head_dropout", "max_length",
                                  "pretrain_epochs", "pretrain_lr", "pretrain_weight_decay", "pretrain_batch_size",
                                  "pretrain_max_samples")}
