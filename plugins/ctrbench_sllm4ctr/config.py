"""Knobs of the Yes/No causal-LM methods, with the papers' settings as defaults.

`sllm4ctr` (SLLM4CTR, Appendix A.5): LoRA r 8, alpha 16, dropout 0.2 on the attention projections, AdamW lr 1e-4,
weight decay 1e-2, batch 32; alpha and beta searched in {1, 0.1, 0.01, 1e-3, 1e-4}.
`tallrec` (TALLRec): LoRA r 8, alpha 16 on q/v, dropout 0.05, lr 1e-4; no temperature, no label matching.

Optimisation (epochs, batch size, learning rate, weight decay, clipping, schedule, early stopping) is ``train.*``
like every other method's, run by the same engine; `TRAIN_DEFAULTS` are the papers' values, used for the keys a
suite does not set. ``train.eval_batch_size`` and the FuxiCTR regularisers do not apply (`UNUSED_TRAIN_KEYS`):
the temperature is computed over each evaluation batch, whose size is ``eval_batch_size`` here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TEMPERATURE_SCALES = ("batch", "none")
TRAIN_DEFAULTS = {"lr": 1e-4, "weight_decay": 1e-2, "batch_size": 32, "epochs": 1, "patience": 1}
T5_ATTENTION = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o"}
UNUSED_TRAIN_KEYS = ("eval_batch_size", "embedding_regularizer", "net_regularizer")
MATCHING_TERMS = ("both", "compress", "expand")


@dataclass(frozen=True)
class LLMCTRConfig:
    """See docs/methods/sllm4ctr.md.

    ``adaptive_temperature``: multiply the Yes/No scores by T (Eq. 2) in training and inference;
    ``temperature_scale``: "batch" (T x |B|, so T = 1 when prompts are indistinguishable) or "none" (Eq. 2 as
    printed). ``label_matching``: add ``beta`` x Eq. 4 with volume hyper-parameter ``volume_alpha``;
    ``matching_terms``: "both", "compress" (w/o Label Matching Loss-2) or "expand" (w/o Label Matching Loss-1).
    ``eval_batch_size``: defaults to ``train.batch_size`` because T is computed over the batch at inference too.
    ``history_items``: how many recently liked items the prompt names; ``template``: "auto" (per dataset) or a
    format string with ``{field}`` placeholders and ``{history}``.
    """

    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.2
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    eval_batch_size: int | None = None
    max_length: int = 128
    history_items: int = 5
    template: str = "auto"
    adaptive_temperature: bool = True
    temperature_scale: str = "batch"
    label_matching: bool = True
    beta: float = 0.1
    volume_alpha: float = 0.1
    matching_terms: str = "both"
    gradient_checkpointing: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.temperature_scale not in TEMPERATURE_SCALES:
            raise ValueError(f"temperature_scale must be one of {TEMPERATURE_SCALES}, got {self.temperature_scale!r}")
        if self.matching_terms not in MATCHING_TERMS:
            raise ValueError(f"matching_terms must be one of {MATCHING_TERMS}, got {self.matching_terms!r}")
        if self.gradient_checkpointing not in ("auto", "on", "off"):
            raise ValueError(f"gradient_checkpointing must be auto, on or off, got {self.gradient_checkpointing!r}")
        for name in ("max_length", "lora_r"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.volume_alpha <= 0:
            raise ValueError(f"volume_alpha must be positive, got {self.volume_alpha}")

    def targets_for(self, family: str) -> tuple[str, ...]:
        """LoRA target modules for the PLM's family: the LLaMA-style attention names the papers use are
        translated to T5's (``q_proj`` -> ``q``) for a seq2seq LM, so one suite runs on either family."""
        if family == "seq2seq_lm":
            return tuple(T5_ATTENTION.get(t, t) for t in self.lora_targets)
        return self.lora_targets

    @property
    def uses_matching(self) -> bool:
        return self.label_matching and self.beta != 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TallRecConfig(LLMCTRConfig):
    """TALLRec's published setting: plain cross-entropy on p_yes, LoRA on q/v."""

    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    adaptive_temperature: bool = False
    label_matching: bool = False
