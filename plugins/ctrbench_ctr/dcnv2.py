"""DCN-V2 (Wang et al., WWW 2021, "DCN V2: Improved Deep & Cross Network ..."), Fig. 2 and Eq. 1–4.

    x_0 = [e_1; …; e_F]                                          (embedding layer, D = F·d)
    cross:   x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l                (Eq. 1, CrossNetV2)
             or the mixture of low-rank experts                    (Eq. 3–4, CrossNetMix)
    parallel:      q = [cross(x_0); MLP(x_0)]                      (Fig. 2b)
    stacked:       q = MLP(cross(x_0))                              (Fig. 2a)
    crossnet_only: q = cross(x_0)
    logit = wᵀ q + b

Defaults follow FuxiCTR's DCNv2 (parallel, 3 cross layers, low_rank 32, 4 experts, ReLU, no dropout or
batch norm) with the DNN tower ``(400, 400, 400)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from ctrbench.data.types import Field
from ctrbench.models.base import CTRBackbone, backbone
from ctrbench.models.layers import CROSS_STRUCTURES, CrossNetMix, CrossNetV2, cross_dnn_forward, cross_dnn_tower

STRUCTURES = CROSS_STRUCTURES


@backbone(
    "dcnv2",
    summary='Deep & Cross Network V2: full-rank or mixture-of-low-rank cross network + MLP',
    paper=(
        'Wang et al., DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale Learning to '
        'Rank Systems, WWW 2021'
    ),
    q=(
        'parallel: [cross_out; dnn_out], [B, F*d + dnn_hidden_units[-1]]; stacked: dnn(cross_out), [B, '
        'dnn_hidden_units[-1]]; crossnet_only: cross_out, [B, F*d] (F counts extra fields)'
    ),
)
class DCNv2(CTRBackbone):
    """Deep & Cross Network V2.

    Args:
        fields: the dataset's fields; the categorical ones are embedded.
        embed_dim: embedding size d.
        num_extra_fields: k extra field embeddings the caller appends to E (``forward(batch, extra)``).
        model_structure: "parallel" (cross ‖ DNN), "stacked" (DNN on top of cross) or "crossnet_only".
        use_low_rank_mixture: the mixture of low-rank experts (DCN-Mix, Eq. 3-4) instead of full W_l.
        low_rank: rank r of each expert (mixture only).
        num_experts: number of experts K per cross layer (mixture only).
        num_cross_layers: number of cross layers L.
        dnn_hidden_units: widths of the DNN tower (unused for "crossnet_only").
        activation: DNN hidden activation.
        dropout: dropout after each DNN hidden layer (the cross network has none, as in FuxiCTR).
        batch_norm: BatchNorm1d after each DNN hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 model_structure: Literal["parallel", "stacked", "crossnet_only"] = "parallel",
                 use_low_rank_mixture: bool = False, low_rank: int = 32, num_experts: int = 4,
                 num_cross_layers: int = 3, dnn_hidden_units: Sequence[int] = (400, 400, 400),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        if model_structure not in STRUCTURES:
            raise ValueError(f"dcnv2: model_structure must be one of {', '.join(STRUCTURES)}, "
                             f"got '{model_structure}'")
        self.model_structure = model_structure
        input_dim = self.num_inputs * embed_dim
        if use_low_rank_mixture:
            self.crossnet = CrossNetMix(input_dim, num_cross_layers, low_rank=low_rank, num_experts=num_experts)
        else:
            self.crossnet = CrossNetV2(input_dim, num_cross_layers)
        self.dnn, width = cross_dnn_tower(model_structure, input_dim, dnn_hidden_units, dropout=dropout,
                                          batch_norm=batch_norm, activation=activation)
        self.build_head(width)

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), d] → q: float[B, hidden_dim] (D, D + dnn width, or dnn width by structure)."""
        return cross_dnn_forward(self.model_structure, E.flatten(start_dim=1), self.crossnet, self.dnn)
