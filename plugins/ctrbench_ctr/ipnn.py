"""IPNN (Qu et al., ICDM 2016, "Product-based Neural Networks for User Response Prediction"), Eq. 1–6.

    z   = (f_1, …, f_N) = [e_1; …; e_F]                              (Eq. 6, linear signals)
    p   = (<e_i, e_j>)_{i<j}                                          (Eq. 6 with g = inner product, Sec. III-A)
    l_1 = relu(l_z + l_p + b_1) = relu(W_1 [z; p] + b_1)              (Eq. 3, 5: l_z^n = W_z^n ⊙ z, l_p^n = W_p^n ⊙ p)
    l_k = relu(W_k l_{k−1} + b_k),  q = l_L,  logit = wᵀ q + b        (Eq. 2, 1)

As FuxiCTR's PNN with ``product_type="inner"``: the product layer is the concatenation [z; p] fed to the
first MLP layer, which is exactly l_z + l_p + b_1 with full (not rank-one decomposed, Sec. III-A) W_z, W_p;
p takes each unordered pair once (the paper's symmetric W_p over all i, j also sees the squared norms
<e_i, e_i>). Extra fields join both z and the pairs.

Defaults follow FuxiCTR (ReLU, no dropout or batch norm) with the ``dnn`` tower ``(400, 400, 400)`` (the
paper's and FuxiCTR's template use three hidden layers; the DeepFM paper tunes IPNN with tanh).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.types import Field
from ctrbench.models.base import CTRBackbone, backbone
from ctrbench.models.layers import MLP, InnerProductLayer


@backbone(
    "ipnn",
    summary='Inner-product PNN: MLP over the field embeddings and all pairwise inner products',
    paper='Qu et al., Product-based Neural Networks for User Response Prediction, ICDM 2016',
    q='the last hidden layer of the MLP over [flattened E; <e_i, e_j> for i<j], [B, hidden_units[-1]]',
)
class IPNN(CTRBackbone):
    """Product-based neural network with inner products.

    Args:
        fields: the dataset's fields; the categorical ones are embedded.
        embed_dim: embedding size d.
        num_extra_fields: k extra field embeddings the caller appends to E; they join z and the pairs.
        hidden_units: widths of the MLP's hidden layers (l_1, …); the last one is ``hidden_dim``.
        activation: MLP hidden activation.
        dropout: dropout after each MLP hidden layer.
        batch_norm: BatchNorm1d after each MLP hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 hidden_units: Sequence[int] = (400, 400, 400), activation: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.inner_product = InnerProductLayer(self.num_inputs)
        input_dim = self.num_inputs * embed_dim + self.inner_product.num_pairs  # |z| + |p|
        self.mlp = MLP(input_dim, hidden_units, dropout=dropout, batch_norm=batch_norm, activation=activation)
        self.build_head(self.mlp.output_dim)  # Eq. 1: W_3, b_3

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), d] → q = MLP([z; p]): float[B, hidden_units[-1]]."""
        z = E.flatten(start_dim=1)  # Eq. 6, linear signals: [B, F·d]
        p = self.inner_product(E)  # Eq. 6, quadratic signals: [B, F(F−1)/2]
        return self.mlp(torch.cat([z, p], dim=-1))  # Eq. 3 and 2
