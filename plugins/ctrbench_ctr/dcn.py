"""DCN (Wang et al., ADKDD 2017, "Deep & Cross Network for Ad Click Predictions"), Fig. 1 and Eq. 3–5.

    x_0 = [e_1; …; e_F]                                            (embedding and stacking layer, D = F·d)
    cross:  x_{l+1} = x_0 x_lᵀ w_l + b_l + x_l,  w_l, b_l ∈ R^D        (Eq. 3, CrossNetV1)
    deep:   h_{l+1} = relu(W_l h_l + b_l),  h_0 = x_0                  (Eq. 4)
    q = [x_{L_1}; h_{L_2}],  logit = w_logitsᵀ q + b                    (Eq. 5, combination layer)

The cross network and the DNN run in parallel on x_0. With ``dnn_hidden_units=()`` the model is the cross
network alone (q = x_{L_1}), as FuxiCTR's DCN with an empty DNN. Extra fields join x_0.

Defaults: 3 cross layers as FuxiCTR's DCN (the paper tunes 1–6) and the ``dnn`` tower ``(400, 400, 400)``
with ReLU (FuxiCTR's constructor default is no DNN), so ``dcn`` is ``dcnv2`` with rank-one crosses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.types import Field
from ctrbench.models.base import CTRBackbone, backbone
from ctrbench.models.layers import MLP, CrossNetV1


@backbone(
    "dcn",
    summary='Deep & Cross Network: rank-one cross network in parallel with an MLP',
    paper='Wang et al., Deep & Cross Network for Ad Click Predictions, ADKDD 2017',
    q='[cross network output x_L; last hidden layer of the MLP], [B, F*d + dnn_hidden_units[-1]] '
      '(F counts extra fields); [B, F*d] when dnn_hidden_units is empty',
)
class DCN(CTRBackbone):
    """Deep & Cross Network.

    Args:
        fields: the dataset's fields; the categorical ones are embedded.
        embed_dim: embedding size d.
        num_extra_fields: k extra field embeddings the caller appends to E (``forward(batch, extra)``).
        num_cross_layers: number of cross layers L_1.
        dnn_hidden_units: widths of the DNN tower; empty for the cross network alone.
        activation: DNN hidden activation.
        dropout: dropout after each DNN hidden layer (the cross network has none).
        batch_norm: BatchNorm1d after each DNN hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 num_cross_layers: int = 3, dnn_hidden_units: Sequence[int] = (400, 400, 400),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        input_dim = self.num_inputs * embed_dim
        self.crossnet = CrossNetV1(input_dim, num_cross_layers)
        self.dnn = MLP(input_dim, dnn_hidden_units, dropout=dropout, batch_norm=batch_norm,
                       activation=activation) if len(dnn_hidden_units) else None
        self.build_head(input_dim + (self.dnn.output_dim if self.dnn is not None else 0))  # Eq. 5: w_logits

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), d] → q = [x_{L_1}; h_{L_2}]: float[B, D (+ dnn width)]."""
        x0 = E.flatten(start_dim=1)  # [B, D]
        cross = self.crossnet(x0)  # Eq. 3
        if self.dnn is None:
            return cross
        return torch.cat([cross, self.dnn(x0)], dim=-1)  # Eq. 4 and 5
