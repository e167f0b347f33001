"""Registers `example-gated-mlp`, a small model written against the public backbone interface only."""

from __future__ import annotations

import torch
from torch import nn

from ctrbench import hookimpl
from ctrbench.models.base import CTRBackbone
from ctrbench.models.layers import MLP


class GatedMLP(CTRBackbone):
    """A field-gated MLP: each field embedding is scaled by a learned gate before the MLP.

    Example only (no paper): shows the three methods a backbone implements and how config keys become
    typed constructor arguments.
    """

    def __init__(self, fields, *, embed_dim: int = 16, num_extra_fields: int = 0,
                 hidden_units: tuple[int, ...] = (128, 64), dropout: float = 0.0) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.gate = nn.Parameter(torch.ones(self.num_inputs, 1))
        self.mlp = MLP(self.num_inputs * embed_dim, hidden_units, dropout=dropout)
        self.build_head(self.mlp.output_dim)

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        gated = E * torch.sigmoid(self.gate)  # [B, F, d]
        return self.mlp(gated.flatten(1))


@hookimpl
def ctrbench_register_ctr_backbones(register) -> None:
    register("example-gated-mlp", GatedMLP, summary="field-gated MLP (third-party example)", paper="(none)",
             q="the MLP's last hidden layer")
