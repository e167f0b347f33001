"""GDCN (Wang et al., CIKM 2023, "Towards Deeper, Lighter and Interpretable Cross Network for CTR Prediction"):
the gated cross network, alone or with a DNN stacked on it (GDCN-S) or next to it (GDCN-P).

    c_0 = [e_1; …; e_F]                                            (embedding layer, D = F·d)
    c_{l+1} = c_0 ⊙ (W^c_l c_l + b_l) ⊙ σ(W^g_l c_l) + c_l         (gated cross layer: crossing ⊙ information gate)
    parallel (GDCN-P):  q = [c_L; MLP(c_0)]
    stacked  (GDCN-S):  q = MLP(c_L)
    crossnet_only (GCN): q = c_L
    logit = wᵀ q + b

Defaults follow the authors' code: 3 gated cross layers and a (400, 400, 400) ReLU tower (FuxiCTR's template:
[1024, 512, 256]), with no dropout (FuxiCTR; the authors' code uses 0.5) and GDCN-P, the structure ``dcnv2``
defaults to, so ``gdcn`` and ``dcnv2`` differ only by the information gate. The paper's field-level
dimension optimisation (a per-field embedding size) is not part of the backbone: every field has ``embed_dim``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from ctrbench.data.types import Field
from ctrbench.models.base import CTRBackbone, backbone
from ctrbench.models.interaction import GatedCrossNet
from ctrbench.models.layers import CROSS_STRUCTURES, cross_dnn_forward, cross_dnn_tower

STRUCTURES = CROSS_STRUCTURES


@backbone(
    "gdcn",
    summary='Gated Deep & Cross Network: cross layers with an information gate, with a DNN (GDCN-P / GDCN-S)',
    paper=('Wang et al., Towards Deeper, Lighter and Interpretable Cross Network for CTR Prediction, '
           'CIKM 2023'),
    q=('parallel: [cross_out; dnn_out], [B, F*d + dnn_hidden_units[-1]]; stacked: dnn(cross_out), [B, '
       'dnn_hidden_units[-1]]; crossnet_only: cross_out, [B, F*d] (F counts extra fields)'),
)
class GDCN(CTRBackbone):
    """Gated Deep & Cross Network.

    Args:
        fields: the dataset's fields; the categorical ones are embedded.
        embed_dim: embedding size d.
        num_extra_fields: k extra field embeddings the caller appends to E (``forward(batch, extra)``).
        model_structure: "parallel" (GDCN-P), "stacked" (GDCN-S) or "crossnet_only" (the paper's GCN).
        num_cross_layers: number of gated cross layers L.
        dnn_hidden_units: widths of the DNN (unused for "crossnet_only").
        activation: DNN hidden activation.
        dropout: dropout after each DNN hidden layer.
        batch_norm: BatchNorm1d after each DNN hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 model_structure: Literal["parallel", "stacked", "crossnet_only"] = "parallel",
                 num_cross_layers: int = 3, dnn_hidden_units: Sequence[int] = (400, 400, 400),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        if model_structure not in STRUCTURES:
            raise ValueError(f"gdcn: model_structure must be one of {', '.join(STRUCTURES)}, "
                             f"got '{model_structure}'")
        self.model_structure = model_structure
        input_dim = self.num_inputs * embed_dim
        self.crossnet = GatedCrossNet(input_dim, num_cross_layers)
        self.dnn, width = cross_dnn_tower(model_structure, input_dim, dnn_hidden_units, dropout=dropout,
                                          batch_norm=batch_norm, activation=activation)
        self.build_head(width)

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), d] → q: float[B, hidden_dim] (D + dnn width, dnn width, or D by structure)."""
        return cross_dnn_forward(self.model_structure, E.flatten(start_dim=1), self.crossnet, self.dnn)
