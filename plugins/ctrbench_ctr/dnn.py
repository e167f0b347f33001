"""Deep neural network over concatenated field embeddings (Covington et al., RecSys 2016; FuxiCTR "DNN").

    q = MLP([e_1; …; e_F]),  logit = wᵀ q + b

Defaults: ``hidden_units=(400, 400, 400)``, ReLU, no dropout, no batch norm. FuxiCTR's own defaults
are ``[64, 64, 64]`` in the constructor and ``[500, 500, 500]`` in its ``DNN_default`` config template;
ClickPrompt (Appendix B.1) searches widths {128, 256, 512} × {3..6} layers. We use the three 400-unit
layers that ``dcnv2`` uses for its deep part, so ``dnn`` is exactly DCN-V2 without its cross network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.types import Field
from ctrbench.models.base import CTRBackbone, backbone
from ctrbench.models.layers import MLP


@backbone(
    "dnn",
    summary='MLP over concatenated field embeddings',
    paper='Covington et al., Deep Neural Networks for YouTube Recommendations, RecSys 2016',
    q='the last hidden layer of the MLP, [B, hidden_units[-1]]',
)
class DNN(CTRBackbone):
    """Plain MLP backbone.

    Args:
        fields: the dataset's fields; the categorical ones are embedded.
        embed_dim: embedding size d.
        num_extra_fields: k extra field embeddings the caller appends to E (``forward(batch, extra)``).
        hidden_units: widths of the MLP's hidden layers; the last one is ``hidden_dim``.
        activation: hidden activation (relu, tanh, sigmoid, leaky_relu, prelu, gelu, silu).
        dropout: dropout rate after each hidden layer (ClickPrompt searches {0, 0.1, 0.2}).
        batch_norm: BatchNorm1d after each hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 hidden_units: Sequence[int] = (400, 400, 400), activation: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.mlp = MLP(self.num_inputs * embed_dim, hidden_units, dropout=dropout, batch_norm=batch_norm,
                       activation=activation)
        self.build_head(self.mlp.output_dim)

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), d] → q = MLP(flatten E): float[B, hidden_units[-1]]."""
        return self.mlp(E.flatten(start_dim=1))
