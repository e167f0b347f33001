"""Knobs of the Yes/No LLM methods, with each paper's settings as its defaults.

`sllm4ctr` (SLLM4CTR, Appendix A.5): LoRA r 8, alpha 16, dropout 0.2 on the attention projections, AdamW lr 1e-4,
weight decay 1e-2, batch 32; alpha and beta searched in {1, 0.1, 0.01, 1e-3, 1e-4}; the prompt frame of its
Appendix A.4/A.7 (``template: sllm4ctr``); the two-way cross-entropy of Eq. 3 (``loss: yes_no_bce``).
`tallrec` (TALLRec, Bao et al. 2023, and its code): LoRA r 8, alpha 16 on q/v, dropout 0.05; AdamW lr 1e-4, no
weight decay, 20 linear warmup steps then linear decay (HF Trainer's defaults it runs on); the Alpaca prompt with
the last 10 interactions as liked / disliked titles (``template: alpaca``); the causal-LM loss on the response
(``loss: lm_response``); no temperature, no label matching.

Optimisation (epochs, batch size, learning rate, weight decay, clipping, schedule, early stopping) is ``train.*``
like every other method's, run by the same engine; ``train_defaults()`` gives each paper's values for the keys a
suite does not set. ``train.eval_batch_size`` and the FuxiCTR regularisers do not apply (`UNUSED_TRAIN_KEYS`):
the temperature is computed over each evaluation batch, whose size is ``eval_batch_size`` here.
"""

# No ``from __future__ import annotations`` here, on purpose: the field annotations stay real types, so the
# factories' signatures (copied from these dataclasses, wherever the factory is defined) carry ``LossName`` itself
# and ``ctrbench validate`` checks ``loss`` against its choices without resolving a name in another module.
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

TEMPERATURE_SCALES = ("batch", "none")
LossName = Literal["yes_no_bce", "lm_response", "lm_full"]
#: ``yes_no_bce``: cross-entropy of the two-way softmax over (No, Yes) at the answer position (SLLM4CTR Eq. 3);
#: ``lm_response``: the causal-LM cross-entropy over the whole vocabulary on the response tokens (the answer and
#: EOS: TALLRec's conditional LM objective); ``lm_full``: the same over every token of prompt + response (what
#: TALLRec's released script runs, ``--train_on_inputs``).
LOSSES: tuple[str, ...] = get_args(LossName)
#: Named prompt templates (`ctrbench_sllm4ctr.prompts`); any other value is a ``str.format`` template.
NAMED_TEMPLATES = ("auto", "alpaca", "sllm4ctr")
SLLM4CTR_TRAIN_DEFAULTS = {"lr": 1e-4, "weight_decay": 1e-2, "batch_size": 32, "epochs": 1, "patience": 1}
TALLREC_TRAIN_DEFAULTS = {"lr": 1e-4, "weight_decay": 0.0, "batch_size": 32, "epochs": 1, "patience": 1,
                          "schedule": "linear", "warmup": 20}
TRAIN_DEFAULTS = SLLM4CTR_TRAIN_DEFAULTS  # the name older code imports
T5_ATTENTION = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o"}
UNUSED_TRAIN_KEYS = ("eval_batch_size", "embedding_regularizer", "net_regularizer")
MATCHING_TERMS = ("both", "compress", "expand")


@dataclass(frozen=True)
class LLMCTRConfig:
    """SLLM4CTR's knobs (see docs/methods/sllm4ctr.md).

    ``template``: "sllm4ctr" (the paper's prompt frame, Appendix A.4/A.7, filled with the dataset's user- and
    item-side fields), "alpaca" (TALLRec's), "auto" (the dataset's own ``text.prompt``: ids, features and liked
    titles) or a ``str.format`` template over field names, ``{history}``, ``{liked}``, ``{disliked}`` and
    ``{target}``. ``history_items``: how many earlier items the prompt names (``{history}``: the most recent liked
    ones; ``{liked}``/``{disliked}``: the last ``history_items`` interactions, split by label). ``max_length``:
    the prompt's token budget (left-truncated, so the question survives; the response tokens of an LM loss come
    on top). ``loss``: one of `LOSSES`. ``adaptive_temperature``: multiply the Yes/No scores by T (Eq. 2) in
    training and inference; ``temperature_scale``: "batch" (T x |B|, so T = 1 when prompts are
    indistinguishable) or "none" (Eq. 2 as printed). ``label_matching``: add ``beta`` x Eq. 4 with volume
    hyper-parameter ``volume_alpha``; ``normalize_embeddings``: L2-normalise the click embeddings before Eq. 4
    (MCR²'s convention; Eq. 4 as printed does not); ``matching_terms``: "both", "compress" (w/o Label Matching
    Loss-2) or "expand" (w/o Label Matching Loss-1). ``eval_batch_size``: defaults to ``train.batch_size``
    because T is computed over the batch at inference too.
    """

    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.2
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    eval_batch_size: int | None = None
    max_length: int = 256
    history_items: int = 5
    template: str = "sllm4ctr"
    loss: LossName = "yes_no_bce"
    adaptive_temperature: bool = True
    temperature_scale: str = "batch"
    label_matching: bool = True
    beta: float = 0.1
    volume_alpha: float = 0.1
    normalize_embeddings: bool = False
    matching_terms: str = "both"
    gradient_checkpointing: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.temperature_scale not in TEMPERATURE_SCALES:
            raise ValueError(f"temperature_scale must be one of {TEMPERATURE_SCALES}, got {self.temperature_scale!r}")
        if self.matching_terms not in MATCHING_TERMS:
            raise ValueError(f"matching_terms must be one of {MATCHING_TERMS}, got {self.matching_terms!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.loss != "yes_no_bce" and self.adaptive_temperature:
            raise ValueError(f"adaptive_temperature rescales the two Yes/No scores of Eq. 3 and needs loss "
                             f"'yes_no_bce'; with loss {self.loss!r} it would act at inference only (set "
                             "adaptive_temperature: false, or loss: yes_no_bce)")
        if self.gradient_checkpointing not in ("auto", "on", "off"):
            raise ValueError(f"gradient_checkpointing must be auto, on or off, got {self.gradient_checkpointing!r}")
        for name in ("max_length", "lora_r"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.history_items < 0:
            raise ValueError(f"history_items must be >= 0, got {self.history_items}")
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

    def train_defaults(self) -> dict[str, Any]:
        """The paper's ``train.*`` values, for the keys a suite leaves out."""
        return dict(SLLM4CTR_TRAIN_DEFAULTS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TallRecConfig(LLMCTRConfig):
    """TALLRec's published setting: the Alpaca prompt of the last 10 interactions, the LM loss on the response,
    LoRA on q/v with dropout 0.05, warmup; no temperature, no label matching."""

    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    max_length: int = 512  # TALLRec's cutoff_len
    history_items: int = 10  # TALLRec's last 10 interactions
    template: str = "alpaca"
    loss: LossName = "lm_response"
    adaptive_temperature: bool = False
    label_matching: bool = False

    def train_defaults(self) -> dict[str, Any]:
        return dict(TALLREC_TRAIN_DEFAULTS)
