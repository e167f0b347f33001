"""Knobs of the Yes/No causal-LM methods, with the papers' settings as defaults.

`sllm4ctr` (SLLM4CTR, Appendix A.5): LoRA r 8, alpha 16, dropout 0.2 on the attention projections, AdamW lr 1e-4,
weight decay 1e-2, batch 32; alpha and beta searched in {1, 0.1, 0.01, 1e-3, 1e-4}.
`tallrec` (TALLRec): LoRA r 8, alpha 16 on q/v, dropout 0.05, lr 1e-4; no temperature, no label matching.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TEMPERATURE_SCALES = ("batch", "none")
MATCHING_TERMS = ("both", "compress", "expand")


@dataclass(frozen=True)
class LLMCTRConfig:
    """See docs/methods/sllm4ctr.md.

    ``adaptive_temperature``: multiply the Yes/No scores by T (Eq. 2) in training and inference;
    ``temperature_scale``: "batch" (T x |B|, so T = 1 when prompts are indistinguishable) or "none" (Eq. 2 as
    printed). ``label_matching``: add ``beta`` x Eq. 4 with volume hyper-parameter ``volume_alpha``;
    ``matching_terms``: "both", "compress" (w/o Label Matching Loss-2) or "expand" (w/o Label Matching Loss-1).
    ``eval_batch_size``: defaults to ``batch_size`` because T is computed over the batch at inference too.
    ``history_items``: how many recently liked items the prompt names; ``template``: "auto" (per dataset) or a
    format string with ``{field}`` placeholders and ``{history}``.
    """

    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.2
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lr: float = 1e-4
    weight_decay: float = 1e-2
    batch_size: int = 32
    eval_batch_size: int | None = None
    epochs: int = 1
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
        for name in ("batch_size", "epochs", "max_length", "lora_r"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.volume_alpha <= 0:
            raise ValueError(f"volume_alpha must be positive, got {self.volume_alpha}")

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
