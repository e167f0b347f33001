"""UniSRec's knobs (torch-free, so `ctrbench validate` reads them without importing the model).

Defaults are the authors' (RUCAIBox/UniSRec: ``props/UniSRec.yaml``, ``props/pretrain.yaml``, ``finetune.py``,
``dataset/preprocessing/process_amazon.py``) unless the docstring says otherwise; docs/methods/baselines.md
(UniSRec section) lists each one with its source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class UniSRecConfig:
    """Knobs of the `unisrec` method.

    ``hidden_size``: width of the adapted item embeddings and of the Transformer (300). ``n_layers``/``n_heads``/
    ``inner_size``: the Transformer (2 / 2 / 256). ``dropout``: its hidden and attention dropout (0.5 both).
    ``n_exps``: MoE adaptor experts (8); ``adaptor_dropout``: dropout on the PLM embedding inside each
    parametric-whitening expert (0.2); ``gate_noise``: the noisy gating in training (on).
    ``max_length``: tokens of each item text the frozen PLM reads (512, the authors' preprocessing).
    ``pretrain``: run the contrastive pretraining stage (sequence-item + ``seq_seq_weight`` × sequence-sequence
    InfoNCE, temperature ``temperature``; 1e-3 and 0.07); ``item_drop_ratio`` (0.2) and ``item_drop_coefficient``
    (0.9: the share of batches augmented by item drop; the others by word drop) build the augmented sequences;
    ``word_drop_ratio``: words dropped from each item text for the word-drop embedding table (ours: 0.2, the
    authors' script takes it as an argument without a published value; 0 switches word drop off).
    ``pretrain_epochs`` (300), ``pretrain_batch_size`` (8192), ``pretrain_lr`` (1e-3, RecBole's default),
    ``pretrain_max_samples`` (None: every positive training row with a history) configure the stage.
    ``freeze_encoder``: after pretraining, fine-tune the adaptor (and the CTR head) with the Transformer and position
    embeddings fixed (the authors' parameter-efficient fine-tuning, ``fix_enc=True``).
    """

    hidden_size: int = 300
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.5
    n_exps: int = 8
    adaptor_dropout: float = 0.2
    gate_noise: bool = True
    max_length: int = 512
    pretrain: bool = True
    temperature: float = 0.07
    seq_seq_weight: float = 1e-3
    item_drop_ratio: float = 0.2
    item_drop_coefficient: float = 0.9
    word_drop_ratio: float = 0.2
    pretrain_epochs: int = 300
    pretrain_batch_size: int = 8192
    pretrain_lr: float = 1e-3
    pretrain_max_samples: int | None = None
    freeze_encoder: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size % self.n_heads:
            raise ValueError(f"unisrec: hidden_size {self.hidden_size} must be divisible by n_heads {self.n_heads}")
        for name in ("dropout", "adaptor_dropout", "item_drop_ratio", "word_drop_ratio"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"unisrec: {name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.item_drop_coefficient <= 1.0:
            raise ValueError(f"unisrec: item_drop_coefficient must be in [0, 1], got {self.item_drop_coefficient}")
        if self.n_exps < 1 or self.n_layers < 1 or self.pretrain_epochs < 1:
            raise ValueError("unisrec: n_exps, n_layers and pretrain_epochs must be at least 1")
        if not self.temperature > 0:
            raise ValueError(f"unisrec: temperature must be > 0, got {self.temperature}")

    def model_key(self) -> dict[str, Any]:
        """The architecture (what a pretrained state dict must match)."""
        d = asdict(self)
        return {k: d[k] for k in ("hidden_size", "n_layers", "n_heads", "inner_size", "dropout", "n_exps",
                                  "adaptor_dropout", "gate_noise")}

    def pretrain_key(self) -> dict[str, Any]:
        """What the pretraining stage depends on besides the data, the item embeddings and the seed."""
        d = asdict(self)
        return {**self.model_key(), **{k: d[k] for k in (
            "temperature", "seq_seq_weight", "item_drop_ratio", "item_drop_coefficient", "pretrain_epochs",
            "pretrain_batch_size", "pretrain_lr", "pretrain_max_samples")}}
