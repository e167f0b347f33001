"""ClickPrompt's knobs, with the paper's / authors' defaults where they exist."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PROMPT_MODES = ("layerwise", "first_layer")
FINETUNE_MODES = ("with_plm", "without_plm")
PRETRAIN_ROWS = ("train", "train_valid")
SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class ClickPromptConfig:
    """See docs/methods/clickprompt.md for what each knob does and what the paper used.

    ``num_prompts``: K prompts per layer (paper sweeps {1, 3, 5, 7}; 5 in its case study).
    ``prompt_mode``: "layerwise" (prefix key/values at every layer, ClickPrompt) or "first_layer" (K soft
    tokens before the input embeddings: the "w/o layerwise" strategy of Table 4).
    ``use_prompt``: False = "w/o prompt" ablation: finetuning without the prompt interface (two towers whose
    logits are fused); the PA-MLM pretraining, when on, still uses prompts.
    ``pretrain``: False = "w/o pretrain" ablation (finetune from scratch).
    ``finetune``: "with_plm" (σ(α·y_ctr + (1−α)·y_plm), α learnable) or "without_plm" (the pretrained CTR
    backbone alone: same class, same inference cost).
    ``plm_lr``: learning rate of the PLM during finetuning (paper: {0, 3e-5, 5e-5}; 0 freezes it); the CTR
    part, generator and heads use ``train.lr``.
    ``pretrain_ctr_lr``: PA-MLM learning rate of the CTR model and prompt generator (the authors' trainer:
    ``ctr_learning_rate`` 1e-3 while the PLM trains at 5e-5); None = ``pretrain_lr`` for everything.
    ``pretrain_schedule``/``pretrain_warmup``: PA-MLM learning-rate schedule (the authors: warmup then linear
    decay); ``pretrain_rows``: "train_valid" also pretrains on validation rows (texts only, no labels, as the
    authors do); ``mask_values_only``: never mask template tokens (field names, "is", "."), so every masked
    token is a feature value the prompts could help recover; ``diagnostic_rows``: held-out test rows scored
    by the alignment diagnostic stored with every PA-MLM stage (0 = off).
    Every new knob at its default leaves the stage key as it was, so cached stages stay valid.
    """

    num_prompts: int = 5
    prompt_mode: str = "layerwise"
    use_prompt: bool = True
    pretrain: bool = True
    finetune: str = "with_plm"
    pretrain_epochs: int = 20
    pretrain_batch_size: int = 1024
    pretrain_lr: float = 5e-5
    pretrain_max_samples: int | None = None
    mask_prob: float = 0.15
    max_length: int = 128
    plm_lr: float = 5e-5
    alpha_init: float = 0.5
    pretrain_ctr_lr: float | None = None
    pretrain_schedule: str = "constant"
    pretrain_warmup: float = 0.0
    pretrain_rows: str = "train"
    mask_values_only: bool = False
    diagnostic_rows: int = 1024

    def __post_init__(self) -> None:
        if self.prompt_mode not in PROMPT_MODES:
            raise ValueError(f"clickprompt: prompt_mode must be one of {PROMPT_MODES}, got {self.prompt_mode!r}")
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"clickprompt: finetune must be one of {FINETUNE_MODES}, got {self.finetune!r}")
        if self.num_prompts < 1:
            raise ValueError(f"clickprompt: num_prompts must be at least 1, got {self.num_prompts}")
        if self.pretrain_rows not in PRETRAIN_ROWS:
            raise ValueError(f"clickprompt: pretrain_rows must be one of {PRETRAIN_ROWS}, got {self.pretrain_rows!r}")
        if self.pretrain_schedule not in SCHEDULES:
            raise ValueError(f"clickprompt: pretrain_schedule must be one of {SCHEDULES}, "
                             f"got {self.pretrain_schedule!r}")
        if self.diagnostic_rows < 0:
            raise ValueError(f"clickprompt: diagnostic_rows must be >= 0, got {self.diagnostic_rows}")
        if self.finetune == "without_plm" and not self.pretrain:
            raise ValueError("clickprompt: finetune=without_plm needs pretrain=true (it would be the backbone alone)")

    def pretrain_key(self) -> dict[str, Any]:
        """What the PA-MLM stage depends on (finetuning knobs excluded, so finetunes share one pretraining)."""
        keys = ("num_prompts", "prompt_mode", "pretrain_epochs", "pretrain_batch_size", "pretrain_lr",
                "pretrain_max_samples", "mask_prob", "max_length")
        d = asdict(self)
        key = {k: d[k] for k in keys}
        # later knobs join the key only when set, so the stages cached before they existed are still found
        defaults = ClickPromptConfig()
        for k in ("pretrain_ctr_lr", "pretrain_schedule", "pretrain_warmup", "pretrain_rows", "mask_values_only",
                  "diagnostic_rows"):
            if d[k] != getattr(defaults, k):
                key[k] = d[k]
        return key
