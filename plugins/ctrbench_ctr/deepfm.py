"""DeepFM (Guo et al., IJCAI 2017, "DeepFM: A Factorization-Machine based Neural Network for CTR Prediction"), Fig. 1.

    y_FM  = <w, x> + Σ_{i<j} <V_i, V_j> x_i x_j                     (Eq. 2; FM and DNN share the embeddings E)
    a^{|H|} = MLP([e_1; …; e_F])                                     (Eq. 3–4)
    y_DNN = W^{|H|+1} a^{|H|} + b^{|H|+1}                            (Eq. 5, before the sigmoid)
    logit = y_FM + y_DNN                                             (Eq. 1)

The parts map onto the backbone interface as: ``linear_logit`` = <w, x> = Σ_f w_f[x_f] (a dim-1
``FieldEmbedding``); ``q = [fm_pairwise(E); a^{|H|}]``; ``head(q)`` = Σ_k q_k over the first d entries (the
pairwise inner products) + W^{|H|+1} a^{|H|} + b. The one bias b is the DNN output's, so the model is
parameter-exact to the paper (FuxiCTR adds a second, redundant bias in its FM part). Extra fields enter the
FM pairwise term and the DNN, but have no first-order weight.

Defaults follow the paper's setup (Sec. 3.1: three 400-unit ReLU layers) without its dropout 0.5, so
``deepfm`` is ``dnn`` plus the FM component (FuxiCTR's constructor default is ``[64, 64, 64]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.data.types import Field
from ctrbench.models.base import Batch, CTRBackbone, FieldEmbedding, backbone
from ctrbench.models.layers import MLP, fm_pairwise


@backbone(
    "deepfm",
    summary='DeepFM: a factorization machine and an MLP sharing the field embeddings, logits summed',
    paper='Guo et al., DeepFM: A Factorization-Machine based Neural Network for CTR Prediction, IJCAI 2017',
    q=(
        '[FM pairwise term sum_{i<j} e_i * e_j before the sum over d; last hidden layer of the MLP], '
        '[B, embed_dim + hidden_units[-1]]; logit = sum(q[:, :d]) + w^T q[:, d:] + b + first-order weights'
    ),
)
class DeepFM(CTRBackbone):
    """DeepFM.

    Args:
        fields: the dataset's fields; each categorical feature gets an embedding e and a scalar weight w.
        embed_dim: embedding size d (the FM factor size).
        num_extra_fields: k extra field embeddings the caller appends to E; they join the FM pairwise term
            and the DNN input.
        hidden_units: widths of the DNN's hidden layers.
        activation: DNN hidden activation.
        dropout: dropout after each DNN hidden layer (the paper uses 0.5).
        batch_norm: BatchNorm1d after each DNN hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 hidden_units: Sequence[int] = (400, 400, 400), activation: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.first_order = FieldEmbedding(self.fields, 1)  # w_f, one scalar per feature
        self.dnn = MLP(self.num_inputs * embed_dim, hidden_units, dropout=dropout, batch_norm=batch_norm,
                       activation=activation)
        self.output = nn.Linear(self.dnn.output_dim, 1)  # W^{|H|+1}, b^{|H|+1} (Eq. 5)
        self.hidden_dim = embed_dim + self.dnn.output_dim

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), d] → q = [Σ_{i<j} e_i ⊙ e_j; a^{|H|}]: float[B, d + hidden_units[-1]]."""
        return torch.cat([fm_pairwise(E), self.dnn(E.flatten(start_dim=1))], dim=-1)

    def head(self, q: torch.Tensor) -> torch.Tensor:
        """Σ_{i<j} <e_i, e_j> + W^{|H|+1} a^{|H|} + b: float[B] (Eq. 1, 2 and 5 without <w, x>)."""
        d = self.embed_dim
        return q[:, :d].sum(dim=-1) + self.output(q[:, d:]).squeeze(-1)

    def linear_logit(self, batch: Batch) -> torch.Tensor:
        """<w, x> = Σ_f w_f[x_f]: float[B] (Eq. 2, first-order part)."""
        return self.first_order(batch.x).sum(dim=(1, 2))
