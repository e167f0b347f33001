"""Early stopping on validation AUC with best-weights restore: the one model-selection rule every method gets.

Why one rule: a leaderboard compares methods, and a method that picked its epoch on test data, or kept its last
epoch while others kept their best, would win or lose for a reason that is not the method.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ctrbench.stats import auc as auc_score
from ctrbench.stats import logloss as logloss_score


class ValidationAUC:
    """Scores the validation split after each epoch; stops after ``patience`` epochs without a better AUC.

    ``predict()`` returns probabilities aligned with ``y``; ``positions`` restricts the AUC to the rows a method
    scores (an LLM scores ``train.eval_max_samples`` rows). ``trainable_only`` keeps the best copy of
    the trainable parameters alone: for a LoRA-tuned LLM that is a few MB instead of the whole frozen model.
    """

    def __init__(self, predict: Callable[[], np.ndarray], y: np.ndarray, patience: int,
                 trainable_only: bool = False, positions: np.ndarray | None = None) -> None:
        self.predict = predict
        self.y = np.asarray(y)
        self.positions = positions
        self.patience = patience
        self.trainable_only = trainable_only
        self.best_auc = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self._best_state: dict[str, torch.Tensor] | None = None

    def update(self, model: nn.Module, epoch: int) -> tuple[dict[str, float], bool]:
        """(metrics of this epoch, whether to stop)."""
        y, p = self.y, self.predict()
        if self.positions is not None:
            y, p = y[self.positions], p[self.positions]
        v_auc = auc_score(y, p)
        metrics = {"valid_auc": v_auc, "valid_logloss": logloss_score(y, p)}
        if v_auc > self.best_auc:
            self.best_auc, self.best_epoch, self.bad_epochs = v_auc, epoch, 0
            self._best_state = self._snapshot(model)
            return metrics, False
        self.bad_epochs += 1
        return metrics, self.bad_epochs >= self.patience

    def _snapshot(self, model: nn.Module) -> dict[str, torch.Tensor]:
        if self.trainable_only:
            return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
        return copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})

    def restore(self, model: nn.Module) -> None:
        if self._best_state is None:
            return
        if self.trainable_only:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, value in self._best_state.items():
                    params[name].copy_(value)
        else:
            model.load_state_dict(self._best_state)
