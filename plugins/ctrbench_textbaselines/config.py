"""The knobs of the three language-model baselines, torch-free (plugin registration reads their signatures).

Every default names its source: the paper where it says, else the public reproduction the ClickPrompt/FLIP
authors released with their baselines (github.com/justarter/FLIP: ``ctr_bert.py``, ``ptab.py``, ``mlm.py``,
``mlm_config.py``), else "gap" (our choice, listed in docs/methods/baselines.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEDULES = ("constant", "linear", "cosine")
MASK_SCOPES = ("text", "values")


def _check(who: str, ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(f"{who}: {msg}")


@dataclass(frozen=True)
class CTRBertConfig:
    """CTR-BERT (Muhamed et al., NeurIPS 2021 ENLSP): two BERT towers, late fusion, optional distillation.

    Towers: the user tower reads the row's non-item fields as "label is value." text, the item tower the item
    id and item-side fields; each gives its [CLS] state. Fusion: an MLP over [user; item; q] (q = the CTR
    backbone's hidden state when ``use_ids``). Distillation (``teacher`` set): a cached stage finetunes a
    cross-encoder teacher (one PLM over the whole row text) on the training rows; the student then minimises
    ``(1 - distill_alpha)·BCE(y) + distill_alpha·BCE(σ(teacher logit))``.
    """

    max_length: int = field(default=50, metadata={"help": "tokens per tower (FLIP repro: max_length // 2 = 50)"})
    shared_towers: bool = field(default=False, metadata={"help": "one PLM for both towers (FLIP repro: two)"})
    use_ids: bool = field(default=True, metadata={"help": "fuse the CTR backbone's q (False: text only)"})
    fusion_hidden: int = field(default=128, metadata={"help": "fusion MLP width (FLIP repro Prediction_Layer)"})
    dropout: float = field(default=0.2, metadata={"help": "fusion MLP dropout (FLIP repro)"})
    plm_lr: float = field(default=5e-5, metadata={"help": "towers' lr (FLIP repro); 0 freezes them"})
    teacher: str | None = field(default=None, metadata={"help": "registered PLM name of the teacher; None = off"})
    teacher_epochs: int = field(default=1, metadata={"help": "teacher finetuning epochs (gap)"})
    teacher_lr: float = field(default=5e-5, metadata={"help": "teacher finetuning lr (gap)"})
    teacher_max_length: int = field(default=128, metadata={"help": "teacher's row-text length (gap)"})
    distill_alpha: float = field(default=0.5, metadata={"help": "weight of the teacher's soft labels (gap)"})

    def __post_init__(self) -> None:
        who = "ctr-bert"
        _check(who, self.max_length >= 4, f"max_length must be >= 4, got {self.max_length}")
        _check(who, self.fusion_hidden >= 1, f"fusion_hidden must be >= 1, got {self.fusion_hidden}")
        _check(who, 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        _check(who, self.plm_lr >= 0, f"plm_lr must be >= 0, got {self.plm_lr}")
        _check(who, 0.0 <= self.distill_alpha <= 1.0, f"distill_alpha must be in [0, 1], got {self.distill_alpha}")
        _check(who, self.teacher_epochs >= 1, f"teacher_epochs must be >= 1, got {self.teacher_epochs}")

    def teacher_key(self) -> dict[str, Any]:
        """What the teacher stage depends on (student knobs excluded, so students share one teacher)."""
        d = asdict(self)
        return {k: d[k] for k in ("teacher", "teacher_epochs", "teacher_lr", "teacher_max_length", "dropout",
                                  "fusion_hidden")}


@dataclass(frozen=True)
class PTabConfig:
    """PTab (Liu et al., 2022): "field: value" row texts (modality transformation), masked-language fine-tuning
    (a cached stage), then classification fine-tuning of the PLM with a head on its [CLS] state.

    ``mask_scope``: "text" selects among every non-special token of the row text (BERT's rule, which the paper's
    MF stage and the FLIP repro's ``dynamic_mask`` follow); "values" only among feature-value tokens.
    """

    max_length: int = field(default=100, metadata={"help": "row-text tokens (FLIP repro, MovieLens/BookCrossing)"})
    pretrain: bool = field(default=True, metadata={"help": "False = the paper's w/o-MF ablation"})
    mask_prob: float = field(default=0.15, metadata={"help": "BERT / FLIP repro mlm_probability"})
    mask_scope: str = field(default="text", metadata={"help": "text | values (see class doc)"})
    pretrain_epochs: int = field(default=10, metadata={"help": "FLIP repro mlm epochs"})
    pretrain_batch_size: int = field(default=128, metadata={"help": "FLIP repro"})
    pretrain_lr: float = field(default=5e-5, metadata={"help": "FLIP repro"})
    pretrain_weight_decay: float = field(default=1e-3, metadata={"help": "FLIP repro"})
    pretrain_schedule: str = field(default="cosine", metadata={"help": "FLIP repro: cosine annealing to 0"})
    pretrain_max_samples: int | None = field(default=None, metadata={"help": "seeded subset of train rows"})
    plm_lr: float = field(default=5e-5, metadata={"help": "finetuning lr of the PLM (FLIP repro); head: train.lr"})
    head_hidden: int = field(default=128, metadata={"help": "classification head width (FLIP repro)"})
    dropout: float = field(default=0.2, metadata={"help": "classification head dropout (FLIP repro)"})

    def __post_init__(self) -> None:
        who = "ptab"
        _check(who, self.mask_scope in MASK_SCOPES, f"mask_scope must be one of {MASK_SCOPES}, got {self.mask_scope!r}")
        _check(who, self.pretrain_schedule in SCHEDULES,
               f"pretrain_schedule must be one of {SCHEDULES}, got {self.pretrain_schedule!r}")
        _check(who, 0.0 < self.mask_prob < 1.0, f"mask_prob must be in (0, 1), got {self.mask_prob}")
        _check(who, self.max_length >= 4, f"max_length must be >= 4, got {self.max_length}")
        _check(who, 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        _check(who, self.plm_lr > 0, f"plm_lr must be > 0 (PTab finetunes the whole PLM), got {self.plm_lr}")

    def pretrain_key(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in ("max_length", "mask_prob", "mask_scope", "pretrain_epochs", "pretrain_batch_size",
                                  "pretrain_lr", "pretrain_weight_decay", "pretrain_schedule",
                                  "pretrain_max_samples")}


@dataclass(frozen=True)
class CTRLConfig:
    """CTRL (Li et al., 2023): InfoNCE alignment of the CTR backbone's representation with the PLM's
    representation of the same sample's text (in-batch negatives, small linear projection heads, a cached
    stage); then the backbone alone is finetuned and served (no PLM at inference).
    """

    max_length: int = field(default=128, metadata={"help": "row-text tokens (gap; ClickPrompt's 128)"})
    align_epochs: int = field(default=5, metadata={"help": "alignment epochs (gap)"})
    align_batch_size: int = field(default=256, metadata={"help": "batch = 1 positive + B-1 negatives (gap)"})
    align_lr: float = field(default=1e-3, metadata={"help": "lr of the CTR backbone and both heads (gap)"})
    align_plm_lr: float = field(default=5e-5, metadata={"help": "lr of the PLM; 0 freezes it (gap)"})
    align_weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay in alignment (gap)"})
    align_max_samples: int | None = field(default=None, metadata={"help": "seeded subset of train rows"})
    temperature: float = field(default=0.07, metadata={"help": "InfoNCE τ (gap: CLIP's initial value)"})
    proj_dim: int = field(default=128, metadata={"help": "projection heads' output width (gap)"})
    symmetric: bool = field(default=True, metadata={"help": "mean of tabular→text and text→tabular losses"})

    def __post_init__(self) -> None:
        who = "ctrl"
        _check(who, self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        _check(who, self.align_batch_size >= 2, f"align_batch_size must be >= 2 (in-batch negatives), got "
                                                f"{self.align_batch_size}")
        _check(who, self.align_epochs >= 1, f"align_epochs must be >= 1, got {self.align_epochs}")
        _check(who, self.align_plm_lr >= 0, f"align_plm_lr must be >= 0, got {self.align_plm_lr}")
        _check(who, self.proj_dim >= 1, f"proj_dim must be >= 1, got {self.proj_dim}")

    def align_key(self) -> dict[str, Any]:
        return asdict(self)
