"""DIN (Zhou et al., KDD 2018, "Deep Interest Network for Click-Through Rate Prediction"), Fig. 2 and Eq. 3.

    E       = [e_1; …; e_F]                                       (the categorical fields; v_A = e_item_id)
    v_U(A)  = Σ_j a(e_j, v_A) e_j   over the user's history         (Eq. 3, activation unit, not softmaxed)
    q       = MLP([E; v_U(A); extra]),  logit = wᵀ q + b

The history is ``batch.sequences[history_field]`` (most recent first, 0 = padding), embedded with the
table of the categorical field it shares (``item_id``), so a liked movie and the target movie have one
embedding. Defaults: activation unit with one 64-unit Dice layer (FuxiCTR's ``attention_hidden_units=[64]``,
``Dice``), and the ``dnn`` tower ``(400, 400, 400)`` with ReLU, so ``din`` is ``dnn`` plus the pooled
interest vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.types import Field
from ctrbench.models.base import Batch, CTRBackbone, backbone
from ctrbench.models.layers import MLP
from ctrbench.models.sequence import ActivationUnit, batch_history, din_pooling, find_history_field


@backbone(
    "din",
    summary='Deep Interest Network: target-attention pooling of the user history + MLP',
    paper='Zhou et al., Deep Interest Network for Click-Through Rate Prediction, KDD 2018',
    q='the last hidden layer of the MLP over [field embeddings; pooled interest v_U(A); extra], '
      '[B, hidden_units[-1]]',
)
class DIN(CTRBackbone):
    """Deep Interest Network. Needs a sequence field (``history_field``) sharing a categorical field's table.

    Args:
        fields: the dataset's fields; the categorical ones are embedded, the sequence one is the history.
        embed_dim: embedding size d.
        num_extra_fields: k extra field embeddings the caller appends to E (``forward(batch, extra)``).
        history_field: name of the sequence field to attend over; its ``shares`` field is the target.
        attention_hidden_units: hidden widths of the activation unit a(·).
        attention_activation: its hidden activation: "dice" or an ``activation_layer`` name (prelu, sigmoid…).
        attention_softmax: normalise the weights with a softmax over valid positions (the paper does not).
        hidden_units: widths of the MLP's hidden layers; the last one is ``hidden_dim``.
        activation: MLP hidden activation.
        dropout: dropout after each MLP hidden layer.
        batch_norm: BatchNorm1d after each MLP hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 history_field: str = "history", attention_hidden_units: Sequence[int] = (64,),
                 attention_activation: str = "dice", attention_softmax: bool = False,
                 hidden_units: Sequence[int] = (400, 400, 400), activation: str = "relu", dropout: float = 0.0,
                 batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.history = find_history_field("din", self.fields, self.sequence_fields, history_field)
        self.target_index = [f.name for f in self.fields].index(self.history.shares)
        self.attention_softmax = attention_softmax
        self.attention = ActivationUnit(embed_dim, attention_hidden_units, attention_activation)
        self.mlp = MLP(self.num_inputs * embed_dim, hidden_units, dropout=dropout, batch_norm=batch_norm,
                       activation=activation)
        self.build_head(self.mlp.output_dim)

    @property
    def num_inputs(self) -> int:
        return len(self.fields) + 1 + self.num_extra_fields  # + the pooled interest vector

    def embed(self, batch: Batch) -> torch.Tensor:
        """float[B, F + 1, d]: the field embeddings, then v_U(A)."""
        E = self.embedding(batch.x)
        hist = batch_history(batch, self.history.name, "din")
        H = self.embedding.lookup(self.history.shares, hist)  # [B, L, d], the shared item table
        pooled, _ = din_pooling(self.attention, H, E[:, self.target_index], hist != 0,
                                softmax=self.attention_softmax)  # Eq. 3
        return torch.cat([E, pooled.unsqueeze(1)], dim=1)

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F + 1(+k), d] → q = MLP(flatten E): float[B, hidden_units[-1]]."""
        return self.mlp(E.flatten(start_dim=1))

