"""Knobs of the two language-model baselines, each paper's setting as its defaults (torch-free: `ctrbench validate`
reads the factories' signatures from these dataclasses without importing torch).

`p5` (Geng et al., RecSys 2022; its code ``jeykigung/P5``, ``src/param.py`` and ``scripts/pretrain_P5_*.sh``; and
ClickPrompt's Appendix B.2, which ran P5 as a CTR baseline): the whole T5 finetuned (``finetune: full``) on the
seq2seq LM loss of the target word (``loss: lm_response``), prompts of at most 512 tokens; AdamW lr 1e-3, weight
decay 0.01, batch 32, 10 epochs, linear decay after a 5% warmup, gradient clipping at 1.0.

`llamarec` (Yue et al. 2023, its code ``Yueeeeeeee/LlamaRec``, ``config.py`` and ``trainer/llm.py``; as SLLM4CTR
ran it for CTR: the ID model's predicted click probability written into the prompt): LoRA r 8, alpha 32, dropout
0.05 on q/v; the loss on the response only (``llm_train_on_inputs=False``); lr 1e-4, batch 16, 1 epoch, 100
warmup steps then HF Trainer's linear decay, no weight decay; the last 20 interactions; prompts of at most 1,536
tokens. Stage 1, the ID model, trains with the ``id_*`` knobs (defaults: `TrainConfig`'s, what every ID baseline
of the suites runs: 10 epochs, batch 256, lr 1e-3, patience 2).
"""

# No ``from __future__ import annotations``, as in ``ctrbench_sllm4ctr.config``: the annotations stay real types,
# so ``ctrbench validate`` checks ``loss``/``finetune`` against their choices.
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from ctrbench_sllm4ctr.config import LOSSES, UNUSED_TRAIN_KEYS, LLMCTRConfig, LossName

FinetuneName = Literal["full", "lora"]
#: ``full``: every weight of the PLM is trained (P5); ``lora``: peft LoRA adapters only, base weights frozen.
FINETUNES: tuple[str, ...] = get_args(FinetuneName)
#: P5's named prompts (`ctrbench_lmbaselines.prompts`); the `ctrbench_sllm4ctr` names and format strings work too.
P5_TEMPLATES = ("p5", "p5_id")
#: LlamaRec's named prompts; any other value is a ``str.format`` template with a ``{ctr_score}`` placeholder.
LLAMAREC_TEMPLATES = ("llamarec", "alpaca", "sllm4ctr")
SCORE_PLACEHOLDER = "ctr_score"
HISTORY_PLACEHOLDER = "user_history"

P5_TRAIN_DEFAULTS = {"epochs": 10, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.01, "schedule": "linear",
                     "warmup": 0.05, "grad_clip": 1.0}
LLAMAREC_TRAIN_DEFAULTS = {"epochs": 1, "batch_size": 16, "lr": 1e-4, "weight_decay": 0.0, "schedule": "linear",
                           "warmup": 100, "patience": 1}

__all__ = ["FINETUNES", "LLAMAREC_TEMPLATES", "LOSSES", "LlamaRecConfig", "P5Config", "P5_TEMPLATES",
           "UNUSED_TRAIN_KEYS"]


def _check_common(cfg: Any) -> None:
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {cfg.loss!r}")
    if cfg.gradient_checkpointing not in ("auto", "on", "off"):
        raise ValueError(f"gradient_checkpointing must be auto, on or off, got {cfg.gradient_checkpointing!r}")
    for name in ("max_length", "lora_r"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.history_items < 0:
        raise ValueError(f"history_items must be >= 0, got {cfg.history_items}")


def _llm_config(cfg: Any) -> LLMCTRConfig:
    """The `YesNoLLM` (TallRec machinery) configuration: the baseline's LoRA, length and loss, no SLLM4CTR parts."""
    return LLMCTRConfig(lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        lora_targets=tuple(cfg.lora_targets), eval_batch_size=cfg.eval_batch_size,
                        max_length=cfg.max_length, history_items=cfg.history_items, template=cfg.template,
                        loss=cfg.loss, adaptive_temperature=False, label_matching=False,
                        gradient_checkpointing=cfg.gradient_checkpointing)


@dataclass(frozen=True)
class P5Config:
    """P5's knobs (docs/methods/baselines.md, "P5").

    ``template``: "p5" (P5's Yes/No rating question about ``user_<id>`` and ``item_<id>`` after the user's and
    the item's features), "p5_id" (the question alone: ids only), a `ctrbench_sllm4ctr` name ("alpaca",
    "sllm4ctr", "auto") or a ``str.format`` template over field names and ``{history}``. ``finetune``: "full"
    (P5: every weight) or "lora" (the ``lora_*`` knobs; a causal LM of billions of parameters is tuned this way,
    as SLLM4CTR ran P5 on LLaMA). ``loss``: "lm_response" (P5: the LM cross-entropy on the target word and
    ``</s>``), "yes_no_bce" (the two-way cross-entropy over Yes/No) or "lm_full" (causal LMs only).
    ``max_length``: the prompt's token budget (left-truncated). ``history_items``: for templates with
    ``{history}``. ``eval_batch_size``: defaults to ``train.batch_size``.
    """

    template: str = "p5"
    finetune: FinetuneName = "full"
    loss: LossName = "lm_response"
    max_length: int = 512
    history_items: int = 5
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    eval_batch_size: int | None = None
    gradient_checkpointing: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.finetune not in FINETUNES:
            raise ValueError(f"finetune must be one of {FINETUNES}, got {self.finetune!r}")
        _check_common(self)

    def llm_config(self) -> LLMCTRConfig:
        return _llm_config(self)

    def train_defaults(self) -> dict[str, Any]:
        """P5's ``train.*`` values, for the keys a suite leaves out."""
        return dict(P5_TRAIN_DEFAULTS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LlamaRecConfig:
    """LlamaRec's knobs (docs/methods/baselines.md, "LlamaRec").

    Stage 2 (the LLM): ``template``: "llamarec" (LlamaRec's short Alpaca frame: the user's history in
    chronological order, the target item and the ID model's click probability), "alpaca" / "sllm4ctr" (TallRec's /
    SLLM4CTR's prompt with the probability added before the response), or a ``str.format`` template with
    ``{ctr_score}`` (and, optionally, ``{user_history}``, fields, ``{history}``, ``{liked}``, ``{disliked}``,
    ``{target}``). ``score_digits``: decimals of the probability in the prompt. ``history_items``: interactions
    in the history. ``loss``, ``max_length``, ``lora_*``, ``eval_batch_size``: as `P5Config`'s (LoRA only).

    Stage 1 (the run's ``ctr:`` backbone, BCE, a cached stage): ``id_epochs``, ``id_batch_size``, ``id_lr``,
    ``id_weight_decay``, ``id_patience`` (early stopping on validation AUC), ``id_max_samples`` (a seeded subset
    of the training rows; None: all), ``id_embedding_regularizer``, ``id_net_regularizer``; ``train.amp`` and
    ``train.embedding_init`` are the run's. ``cross_fit_folds``: 0 (or 1): one ID model trained on the stage's
    training rows scores every row, its own training rows included (the reading of SLLM4CTR's description);
    k >= 2: each of those training rows is scored by a model trained on the other k - 1 folds (validation and
    test rows by the model trained on all of them), so the LLM never reads a score fitted to its own label.
    """

    template: str = "llamarec"
    score_digits: int = 2
    history_items: int = 20
    loss: LossName = "lm_response"
    max_length: int = 1536
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    eval_batch_size: int | None = None
    gradient_checkpointing: str = "auto"
    cross_fit_folds: int = 0
    id_epochs: int = 10
    id_batch_size: int = 256
    id_lr: float = 1e-3
    id_weight_decay: float = 0.0
    id_patience: int = 2
    id_max_samples: int | None = None
    id_embedding_regularizer: float = 0.0
    id_net_regularizer: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        _check_common(self)
        if self.template not in LLAMAREC_TEMPLATES and f"{{{SCORE_PLACEHOLDER}}}" not in self.template:
            raise ValueError(f"template must be one of {LLAMAREC_TEMPLATES} or a str.format template with "
                             f"{{{SCORE_PLACEHOLDER}}} (where the ID model's click probability goes), "
                             f"got {self.template!r}")
        if not 0 <= self.score_digits <= 8:
            raise ValueError(f"score_digits must be in 0..8, got {self.score_digits}")
        if self.cross_fit_folds < 0:
            raise ValueError(f"cross_fit_folds must be >= 0 (0 or 1: no cross-fitting), got {self.cross_fit_folds}")
        for name in ("id_epochs", "id_batch_size", "id_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def llm_config(self) -> LLMCTRConfig:
        return _llm_config(self)

    def id_train(self) -> dict[str, Any]:
        """Stage 1's ``TrainConfig`` keys (the rest: `TrainConfig`'s defaults, ``amp``/``embedding_init`` the run's)."""
        return {"epochs": self.id_epochs, "batch_size": self.id_batch_size, "lr": self.id_lr,
                "weight_decay": self.id_weight_decay, "patience": self.id_patience,
                "max_samples": self.id_max_samples, "embedding_regularizer": self.id_embedding_regularizer,
                "net_regularizer": self.id_net_regularizer}

    def train_defaults(self) -> dict[str, Any]:
        """LlamaRec's ``train.*`` values (stage 2), for the keys a suite leaves out."""
        return dict(LLAMAREC_TRAIN_DEFAULTS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
