"""CELA's knobs (torch-free, so `ctrbench validate` checks suite keys without importing torch).

Defaults are the paper's (Wang et al., CELA, §5.1.4) where it gives a value, else the authors' public code, else
a documented choice; docs/methods/cela.md lists which is which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

DAP_WEIGHTINGS = ("paper", "authors_code")
SIMILARITIES = ("inner", "cosine")
TEXT_TABLES = ("auto", "raw", "projected")
MF2_TABLES = ("text", "id")
ALIGN_FIELDS = ("item_side", "item_id")
MF2_INITS = ("fresh", "dap")
SCHEDULES = ("constant", "linear", "cosine")
CAUSAL_POOLINGS = ("mean", "last")
CHECKPOINTING = ("auto", "on", "off")


@dataclass(frozen=True)
class CELAConfig:
    """See docs/methods/cela.md for every knob, the paper's value and the ablation it switches.

    Stage 1, DAP (Eq. 4–7): ``dap`` (False: "CELA w/o DAP", the PLM as loaded), ``mlm``/``simcse`` (False: "DAP
    w/o MLM" / "DAP w/o SimCSE"), ``alpha`` (α of Eq. 6, paper range [0.1, 1.5]), ``tau1`` (τ₁, [0.001, 0.1]),
    ``dap_weighting`` ("paper": L_MLM + α·L_SimCSE; "authors_code": 0.1·L_MLM + L_SimCSE), ``dap_epochs``,
    ``dap_batch_size`` (32), ``dap_lr`` (5e-5), ``dap_schedule`` (linear), ``mask_prob``, ``max_length`` (256,
    clamped to the PLM's positions). The ID model of Eq. 7 is the run's ``ctr:`` trained with ``train:``.

    Stage 2, ROMA (Eq. 8–12): ``roma`` (False: "CELA w/o ROMA"), ``roma_plm`` (False: "ROMA w/o PLM", the PLM
    frozen, only the projection head trains on its cached outputs), ``similarity`` ("inner", Eq. 10; "cosine":
    "ROMA w/ cos"), ``tau2`` (τ₂ = 1), ``roma_epochs``, ``roma_batch_size`` (128), ``roma_lr`` (PLM, 5e-5),
    ``proj_lr`` (projection head), ``roma_schedule``, ``proj_hidden`` (hidden units before the f_i·d output:
    [128]), ``proj_layernorm`` (the authors' LayerNorm on the head's output), ``align_fields`` (which item fields
    form e_iⁿ: "item_side" = item id + the item-side fields, "item_id" = the id alone), ``align_top`` (align only
    the top fraction of items by training rows, Fig. 5).

    Stage 3, MF² (Eq. 13–14): ``text_table`` (what the cached table holds: "raw" PLM [CLS] states, "projected"
    head outputs, "auto" = raw unless the PLM is frozen in ROMA), ``mf2_table`` ("text"; "id": "MF² w/o text",
    the DAP ID model's item embeddings instead), ``fusion_hidden`` (hidden units of the two MLPs of Eq. 13),
    ``table_trainable`` (False: the cached table is frozen), ``mf2_init`` ("fresh" new ID model, "dap": start
    from the DAP ID model), ``use_history`` (the history-mean term of Eq. 13).

    Alternation (§4.4): ``rounds`` R ≥ 1 of ROMA → MF²; round r > 1 realigns to round r − 1's MF² item table.

    A causal-LM ``plm:`` (Fig. 4's OPT end, `encoder.py`): ``lora_r``, ``lora_alpha``, ``lora_dropout``,
    ``lora_targets`` (empty: the family's q/v projections) for the adapters DAP and ROMA train, and
    ``causal_pooling`` ("mean" over real tokens, or the "last" token's state) for its sentence embedding; ``mlm``
    then switches the causal-LM loss. Ignored for a masked LM.
    """

    # stage 1: DAP
    dap: bool = True
    mlm: bool = True
    simcse: bool = True
    alpha: float = 1.0
    tau1: float = 0.05
    dap_weighting: str = "paper"
    dap_epochs: int = 10
    dap_batch_size: int = 32
    dap_lr: float = 5e-5
    dap_schedule: str = "linear"
    mask_prob: float = 0.15
    max_length: int = 256
    # stage 2: ROMA
    roma: bool = True
    roma_plm: bool = True
    similarity: str = "inner"
    tau2: float = 1.0
    roma_epochs: int = 10
    roma_batch_size: int = 128
    roma_lr: float = 5e-5
    proj_lr: float = 1e-3
    roma_schedule: str = "linear"
    proj_hidden: Sequence[int] = (128,)
    proj_layernorm: bool = False
    align_fields: str = "item_side"
    align_top: float = 1.0
    # stage 3: MF²
    text_table: str = "auto"
    mf2_table: str = "text"
    fusion_hidden: Sequence[int] = (128,)
    table_trainable: bool = False
    mf2_init: str = "fresh"
    use_history: bool = True
    # alternation
    rounds: int = 2
    # a causal-LM PLM (LoRA)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: Sequence[str] = ()
    causal_pooling: str = "mean"
    # recompute a causal LM's activations in backward: ROMA's batch of 128 texts through SmolLM2-135M peaks at
    # about 11 GB resident without it and 2.3 GB with it (at about twice the ROMA time on a CPU), so two workers
    # fit a 24 GB machine. Gradients are bit-identical either way (tests/test_cela_causal.py), so it is in no
    # stage key. auto = on for a causal LM.
    gradient_checkpointing: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "proj_hidden", tuple(int(u) for u in self.proj_hidden))
        object.__setattr__(self, "fusion_hidden", tuple(int(u) for u in self.fusion_hidden))
        object.__setattr__(self, "lora_targets", tuple(str(t) for t in self.lora_targets))
        for name, allowed in (("dap_weighting", DAP_WEIGHTINGS), ("similarity", SIMILARITIES),
                              ("text_table", TEXT_TABLES), ("mf2_table", MF2_TABLES), ("align_fields", ALIGN_FIELDS),
                              ("mf2_init", MF2_INITS), ("dap_schedule", SCHEDULES), ("roma_schedule", SCHEDULES),
                              ("causal_pooling", CAUSAL_POOLINGS), ("gradient_checkpointing", CHECKPOINTING)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"cela: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.dap and not (self.mlm or self.simcse):
            raise ValueError("cela: dap=true needs mlm or simcse (set dap: false to skip the stage)")
        if not 0 < self.align_top <= 1:
            raise ValueError(f"cela: align_top must be in (0, 1], got {self.align_top}")
        if self.rounds < 1:
            raise ValueError(f"cela: rounds must be >= 1, got {self.rounds}")
        for name in ("tau1", "tau2", "dap_lr", "roma_lr", "proj_lr", "mask_prob"):
            if not getattr(self, name) > 0:
                raise ValueError(f"cela: {name} must be > 0, got {getattr(self, name)}")
        if self.alpha < 0:
            raise ValueError(f"cela: alpha must be >= 0, got {self.alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"cela: lora_dropout must be in [0, 1), got {self.lora_dropout}")
        for name in ("dap_epochs", "dap_batch_size", "roma_epochs", "roma_batch_size", "max_length", "lora_r",
                     "lora_alpha"):
            if getattr(self, name) < 1:
                raise ValueError(f"cela: {name} must be >= 1, got {getattr(self, name)}")
        if self.text_table == "projected" and not self.roma:
            raise ValueError("cela: text_table=projected needs roma=true (the projection head is trained by ROMA)")
        if not self.roma_plm and self.text_table == "raw":
            raise ValueError("cela: roma_plm=false freezes the PLM, so a raw text table would ignore ROMA; use "
                             "text_table: projected (or auto)")

    @property
    def table_kind(self) -> str:
        """What the MF² text table holds: "raw" PLM states or "projected" head outputs (resolves "auto")."""
        if self.text_table != "auto":
            return self.text_table
        return "projected" if (self.roma and not self.roma_plm) else "raw"

    def _pick(self, names: Sequence[str]) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(d[k]) if isinstance(d[k], tuple) else d[k] for k in names}

    def dap_key(self) -> dict[str, Any]:
        """What the DAP stage depends on (besides data, PLM and seed)."""
        return self._pick(("mlm", "simcse", "alpha", "tau1", "dap_weighting", "dap_epochs", "dap_batch_size",
                           "dap_lr", "dap_schedule", "mask_prob", "max_length"))

    def roma_key(self) -> dict[str, Any]:
        """What one ROMA round depends on (besides the PLM it starts from and the ID table it aligns to)."""
        return self._pick(("roma_plm", "similarity", "tau2", "roma_epochs", "roma_batch_size", "roma_lr", "proj_lr",
                           "roma_schedule", "proj_hidden", "proj_layernorm", "align_fields", "align_top",
                           "max_length"))

    def causal_key(self) -> dict[str, Any]:
        """What a causal-LM PLM's stages add to their keys (absent for a masked LM, whose keys stay as they were)."""
        return self._pick(("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "causal_pooling"))

    def mf2_key(self) -> dict[str, Any]:
        """What one MF² stage depends on (besides its table and the run's CTR backbone and training)."""
        return self._pick(("fusion_hidden", "table_trainable", "mf2_init", "use_history"))
