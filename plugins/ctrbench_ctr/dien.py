"""DIEN (Zhou et al., AAAI 2019, "Deep Interest Evolution Network for Click-Through Rate Prediction"), Fig. 1.

    E     = [e_1; …; e_F]                                   (the categorical fields; e_a = e_item_id)
    h_t   = GRU(e_b[t], h_{t-1})                              (interest extractor, Eq. 1–4, oldest → newest)
    a_t   = softmax_t(h_t W e_a)                               (Eq. 7, over the valid positions)
    h'_t  = AUGRU(h_t, h'_{t-1}, a_t)                          (interest evolving layer, Eq. 10–11)
    q     = MLP([E; h'_T; extra]),  logit = wᵀ q + b

The history is ``batch.sequences[history_field]`` (most recent first, 0 = padding), embedded with the
table of the categorical field it shares (``item_id``); both GRUs have ``embed_dim`` units, so h'_T is one
more d-wide input of the MLP. The auxiliary loss (Eq. 5–6) is omitted, as with FuxiCTR's default
``aux_loss_alpha=0`` (see ``ctrbench.models.sequence.InterestEvolution``). Defaults: the ``dnn`` tower
``(400, 400, 400)`` with ReLU, so ``dien`` is ``dnn`` plus the evolved interest.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.types import Field
from ctrbench.models.base import Batch, CTRBackbone, backbone
from ctrbench.models.layers import MLP
from ctrbench.models.sequence import InterestEvolution, batch_history, find_history_field


@backbone(
    "dien",
    summary='Deep Interest Evolution Network: GRU interest extractor + attention-gated AUGRU evolution + MLP',
    paper='Zhou et al., Deep Interest Evolution Network for Click-Through Rate Prediction, AAAI 2019',
    q="the last hidden layer of the MLP over [field embeddings; final evolved interest h'_T; extra], "
      '[B, hidden_units[-1]]',
)
class DIEN(CTRBackbone):
    """Deep Interest Evolution Network. Needs a sequence field (``history_field``) sharing a categorical table.

    Args:
        fields: the dataset's fields; the categorical ones are embedded, the sequence one is the history.
        embed_dim: embedding size d (also the width of both GRUs).
        num_extra_fields: k extra field embeddings the caller appends to E (``forward(batch, extra)``).
        history_field: name of the sequence field to read; its ``shares`` field is the target.
        hidden_units: widths of the MLP's hidden layers; the last one is ``hidden_dim``.
        activation: MLP hidden activation.
        dropout: dropout after each MLP hidden layer.
        batch_norm: BatchNorm1d after each MLP hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 history_field: str = "history", hidden_units: Sequence[int] = (400, 400, 400),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.history = find_history_field("dien", self.fields, self.sequence_fields, history_field)
        self.target_index = [f.name for f in self.fields].index(self.history.shares)
        self.interest = InterestEvolution(embed_dim)
        self.mlp = MLP(self.num_inputs * embed_dim, hidden_units, dropout=dropout, batch_norm=batch_norm,
                       activation=activation)
        self.build_head(self.mlp.output_dim)

    @property
    def num_inputs(self) -> int:
        return len(self.fields) + 1 + self.num_extra_fields  # + the final evolved interest

    def embed(self, batch: Batch) -> torch.Tensor:
        """float[B, F + 1, d]: the field embeddings, then h'_T."""
        E = self.embedding(batch.x)
        hist = batch_history(batch, self.history.name, "dien")
        H = self.embedding.lookup(self.history.shares, hist)  # [B, L, d], the shared item table
        final = self.interest(H, E[:, self.target_index], hist != 0)
        return torch.cat([E, final.unsqueeze(1)], dim=1)

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F + 1(+k), d] → q = MLP(flatten E): float[B, hidden_units[-1]]."""
        return self.mlp(E.flatten(start_dim=1))
