"""What a method returns (`Predictions`) and what the store keeps per run (`RunResult`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Predictions:
    """Click probabilities of a trained model on the validation and test rows (in split order).

    Costs come from `ctrbench.cost` for every method: ``n_params`` counts what runs at inference (ClickPrompt
    without the PLM: the backbone alone; an LLM: base model plus adapters), ``trainable_params`` what training
    updated (-1: not reported), ``infer_ms_per_batch`` the median over warm batches of 128 test rows.
    """

    valid: np.ndarray
    test: np.ndarray
    n_params: int
    train_seconds: float
    infer_seconds: float
    infer_ms_per_batch: float = float("nan")
    epochs: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    trainable_params: int = -1


#: A method reports what each of its cached stages (pretraining, alignment, an ID model it reads) cost as a
#: metric named ``<stage>_seconds`` in ``Predictions.extra`` (``align_seconds``, ``pretrain_seconds``…), and only
#: its final training as ``train_seconds``; efficiency boards sum the former into a "Stages s" column, so a
#: two-stage method is not shown as cheap as its backbone. A stage's cost is that of the run that computed it.
STAGE_SECONDS_SUFFIX = "_seconds"


def stage_seconds(metrics: dict[str, float]) -> float:
    """The summed ``<stage>_seconds`` metrics of a run (0.0 for a single-stage method)."""
    return float(sum(v for k, v in metrics.items() if k.endswith(STAGE_SECONDS_SUFFIX)))


@dataclass(frozen=True)
class RunResult:
    """The stored outcome of one run.

    ``metrics`` holds ``test_auc``, ``test_logloss``, ``valid_auc``, ``valid_logloss`` (and method extras);
    ``buckets`` maps a long-tail bucket name to ``{"auc", "logloss", "n"}`` on the test split.
    """

    run_id: str
    status: str  # "ok" | "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, dict[str, float]] = field(default_factory=dict)
    n_params: int = 0
    train_seconds: float = 0.0
    infer_seconds: float = 0.0
    infer_ms_per_batch: float = float("nan")
    epochs: int = 0
    error: str = ""
    trainable_params: int = -1

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
