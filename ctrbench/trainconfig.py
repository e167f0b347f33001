"""`TrainConfig`: the ``train:`` keys of a suite, in a module without torch so `validate` stays fast."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

SCHEDULES = ("constant", "linear", "cosine")
# "default": each backbone's own init (N(0, 1e-4) tables); "xavier_normal": per-field Xavier-normal tables, set
# for every arm of a suite under defaults.train so the comparison stays fair (ClickPrompt's authors use it)
EMBEDDING_INITS = ("default", "xavier_normal")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; every key can be set in a suite under ``train:``."""

    epochs: int = 10
    batch_size: int = 256
    eval_batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 2
    grad_clip: float = 10.0
    max_samples: int | None = None
    eval_max_samples: int | None = None
    amp: bool = True
    # bf16 autocast on the CPU too: oneDNN's bf16 matmuls run 2.3x the float32 rate on CPUs with avx512_bf16 or
    # AMX (a SmolLM2-135M LoRA step 1.9x faster, benchmarks/README.md) and slower on CPUs without; off by
    # default because it changes a run's numerics, so a board must opt in and say so
    cpu_amp: bool = False
    schedule: str = "constant"
    warmup: float = 0.0
    embedding_regularizer: float = 0.0
    net_regularizer: float = 0.0
    embedding_init: str = "default"
    # sparse gradients for the CTR backbones' embedding tables, stepped by a lazy Adam (only looked-up rows and
    # their moments move; ctrbench/engine/sparse.py): for million-row tables; other numbers than dense AdamW
    sparse_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.sparse_embeddings and (self.weight_decay or self.embedding_regularizer):
            key = "weight_decay" if self.weight_decay else "embedding_regularizer"
            raise ValueError(f"train.sparse_embeddings: train.{key} would update every row of the embedding tables "
                             "each step (a dense update); set it to 0 (train.net_regularizer still penalises the "
                             "other weights)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.embedding_init not in EMBEDDING_INITS:
            raise ValueError(f"train.embedding_init must be one of {', '.join(EMBEDDING_INITS)}, "
                             f"got {self.embedding_init!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**d)


TRAIN_KEYS = {f.name: f.type for f in fields(TrainConfig)}
# train keys that take one of a few words (checked at `ctrbench validate`)
TRAIN_CHOICES = {"schedule": SCHEDULES, "embedding_init": EMBEDDING_INITS}
