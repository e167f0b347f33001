"""xDeepFM (Lian et al., KDD 2018, "xDeepFM: Combining Explicit and Implicit Feature Interactions ..."), Eq. 6–9.

    X^0     = E = [e_1; …; e_m] ∈ R^{m×D}                                  (embedding layer, D = d)
    X^k_h   = Σ_i Σ_j W^{k,h}_{ij} (X^{k−1}_{i,*} ∘ X^0_{j,*})                 (Eq. 6, CIN layer k)
    p^+     = [p^1; …; p^T],  p^k_h = Σ_t X^k_{h,t}                          (Eq. 7, sum pooling)
    x_dnn   = MLP([e_1; …; e_m])                                            (the plain DNN)
    logit   = w_linearᵀ a + w_dnnᵀ x_dnn + w_cinᵀ p^+ + b                    (Eq. 9, Sec. 3.3, Fig. 5)

The parts map onto the backbone interface as: ``linear_logit`` = w_linearᵀ a = Σ_f w_f[x_f] (a dim-1
``FieldEmbedding`` on the raw one-hot features); ``q = [p^+; x_dnn]``; ``head`` = one Linear over q, i.e.
w_cin, w_dnn and the single bias b of Eq. 9. The CIN follows Eq. 6 exactly (no bias, identity
activation, every layer's maps both pooled and fed forward: no split-half). With ``dnn_hidden_units=()``
the model is linear + CIN, as FuxiCTR's xDeepFM with an empty DNN. Extra fields join X^0 and the DNN
input, without first-order weights.

Defaults: ``cin_hidden_units=(16, 16, 16)`` as FuxiCTR's xDeepFM constructor (its config template uses
``[32, 32, 32]``; the paper tunes the CIN's depth and 100–200 maps per layer) and the ``dnn`` tower
``(400, 400, 400)`` with ReLU (the paper's DNN width is 400), so ``xdeepfm`` is ``dnn`` plus LR and CIN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.types import Field
from ctrbench.models.base import Batch, CTRBackbone, FieldEmbedding, backbone
from ctrbench.models.layers import CIN, MLP


@backbone(
    "xdeepfm",
    summary='xDeepFM: linear part + Compressed Interaction Network (explicit vector-wise crosses) + MLP',
    paper=(
        'Lian et al., xDeepFM: Combining Explicit and Implicit Feature Interactions for Recommender Systems, '
        'KDD 2018'
    ),
    q=(
        '[sum-pooled CIN feature maps p^+; last hidden layer of the MLP], [B, sum(cin_hidden_units) + '
        'dnn_hidden_units[-1]]; logit = w^T q + b + first-order weights'
    ),
)
class XDeepFM(CTRBackbone):
    """eXtreme Deep Factorization Machine.

    Args:
        fields: the dataset's fields; each categorical feature gets an embedding e and a scalar weight w.
        embed_dim: embedding size d (the paper's D).
        num_extra_fields: k extra field embeddings the caller appends to E; they join the CIN and the DNN.
        cin_hidden_units: number of feature maps H_k of each CIN layer.
        dnn_hidden_units: widths of the DNN tower; empty for linear + CIN only.
        activation: DNN hidden activation.
        dropout: dropout after each DNN hidden layer.
        batch_norm: BatchNorm1d after each DNN hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 cin_hidden_units: Sequence[int] = (16, 16, 16), dnn_hidden_units: Sequence[int] = (400, 400, 400),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        if not len(cin_hidden_units):
            raise ValueError("xdeepfm: cin_hidden_units must name at least one CIN layer")
        self.first_order = FieldEmbedding(self.fields, 1)  # w_linear, one scalar per feature
        self.cin = CIN(self.num_inputs, cin_hidden_units)
        self.dnn = MLP(self.num_inputs * embed_dim, dnn_hidden_units, dropout=dropout, batch_norm=batch_norm,
                       activation=activation) if len(dnn_hidden_units) else None
        dnn_width = self.dnn.output_dim if self.dnn is not None else 0
        self.build_head(self.cin.output_dim + dnn_width)  # Eq. 9: w_cin, w_dnn, b

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, m(+k), d] → q = [p^+; x_dnn]: float[B, Σ H_k (+ dnn width)]."""
        p = self.cin(E)  # Eq. 6–7
        if self.dnn is None:
            return p
        return torch.cat([p, self.dnn(E.flatten(start_dim=1))], dim=-1)

    def linear_logit(self, batch: Batch) -> torch.Tensor:
        """w_linearᵀ a = Σ_f w_f[x_f]: float[B] (Eq. 9, linear part)."""
        return self.first_order(batch.x).sum(dim=(1, 2))
