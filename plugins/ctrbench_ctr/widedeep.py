"""Wide & Deep (Cheng et al., DLRS 2016, "Wide & Deep Learning for Recommender Systems"), Fig. 1 and Eq. 3.

    wide:  w_wideᵀ x = Σ_f w_f[x_f]                                 (a generalized linear model, Sec. 3.1)
    deep:  a^{(l_f)} = MLP([e_1; …; e_F])                             (Eq. 2)
    logit = w_wideᵀ x + w_deepᵀ a^{(l_f)} + b                          (Eq. 3, jointly trained)

The wide part is ``linear_logit``: the first-order weight of each one-hot feature (a dim-1
``FieldEmbedding``). The paper's hand-made cross-product transformations φ(x) are dataset-specific feature
engineering and are left out, as in FuxiCTR's WideDeep; so are its per-part optimizers (FTRL with L1 for
wide, AdaGrad for deep): the trainer picks one optimizer. ``q`` is the deep tower's last hidden layer and
``head`` the shared output unit w_deep, b. Extra fields enter the deep part only.

Defaults: three 400-unit ReLU layers as ``dnn`` (the paper's app-store model uses 1024-512-256 on
32-d embeddings; FuxiCTR's constructor default is ``[64, 64, 64]``), so ``widedeep`` is ``dnn`` + LR.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.types import Field
from ctrbench.models.base import Batch, CTRBackbone, FieldEmbedding, backbone
from ctrbench.models.layers import MLP


@backbone(
    "widedeep",
    summary='Wide & Deep: a linear model on the one-hot features plus an MLP on their embeddings, logits summed',
    paper='Cheng et al., Wide & Deep Learning for Recommender Systems, DLRS 2016',
    q='the last hidden layer of the deep MLP, [B, hidden_units[-1]]; logit = w^T q + b + wide first-order weights',
)
class WideDeep(CTRBackbone):
    """Wide & Deep.

    Args:
        fields: the dataset's fields; each categorical feature gets an embedding (deep) and a scalar weight (wide).
        embed_dim: embedding size d.
        num_extra_fields: k extra field embeddings the caller appends to E; they enter the deep part only.
        hidden_units: widths of the deep MLP's hidden layers; the last one is ``hidden_dim``.
        activation: deep hidden activation.
        dropout: dropout after each deep hidden layer.
        batch_norm: BatchNorm1d after each deep hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 hidden_units: Sequence[int] = (400, 400, 400), activation: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.wide = FieldEmbedding(self.fields, 1)  # w_wide, one scalar per feature
        self.dnn = MLP(self.num_inputs * embed_dim, hidden_units, dropout=dropout, batch_norm=batch_norm,
                       activation=activation)
        self.build_head(self.dnn.output_dim)  # w_deep, b (Eq. 3)

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), d] → q = a^{(l_f)} = MLP(flatten E): float[B, hidden_units[-1]] (Eq. 2)."""
        return self.dnn(E.flatten(start_dim=1))

    def linear_logit(self, batch: Batch) -> torch.Tensor:
        """w_wideᵀ x = Σ_f w_f[x_f]: float[B] (Eq. 3, wide part)."""
        return self.wide(batch.x).sum(dim=(1, 2))
