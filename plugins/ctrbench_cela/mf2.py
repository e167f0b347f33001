"""Stage 3 of CELA (Wang et al., §4.3): multi-modal feature fusion with a cached item text-embedding table.

    e' = e ∘ MLP(x^{i,id} E^{i,t}) ∘ MLP(x^{h,id} E^{i,t})      (Eq. 13)
    ŷ  = FC(FI(e'))                                            (Eq. 14)

E^{i,t} (``table``, float[V, D]) holds one row per item, computed once by the aligned PLM; the PLM is not part
of this model, so CTR training and inference never run it. The history term is the mean of the table rows of
the user's earlier liked items (padding excluded; zeros for an empty history). Both MLP outputs have the
backbone's embedding size d and enter it as two extra fields, so any `CTRBackbone` is the FI/FC of Eq. 14.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.models.base import Batch, CTRBackbone
from ctrbench.models.layers import MLP


def text_mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """One MLP of Eq. 13: hidden ReLU layers, then a linear map to the embedding size d."""
    mlp = MLP(in_dim, hidden)
    return nn.Sequential(mlp, nn.Linear(mlp.output_dim, out_dim))


class MF2Model(nn.Module):
    """ID backbone + cached text table (+ the two MLPs of Eq. 13): ``forward(batch) -> logit[B]``.

    ``table`` is a buffer (frozen: not a trainable parameter, not counted in ``n_params``, as the paper's Table 3
    counts MF²) unless ``trainable``. ``history`` names the sequence field of liked items (None: no history term).
    """

    def __init__(self, ctr: CTRBackbone, table: torch.Tensor, item_col: int, history: str | None,
                 hidden: Sequence[int] = (128,), trainable: bool = False) -> None:
        super().__init__()
        self.ctr = ctr
        self.item_col = item_col
        self.history = history
        if trainable:
            self.table = nn.Parameter(table.detach().clone().float())
        else:
            self.register_buffer("table", table.detach().clone().float())
        d, width = ctr.embed_dim, table.shape[1]
        self.item_mlp = text_mlp(width, hidden, d)
        self.history_mlp = text_mlp(width, hidden, d) if history is not None else None
        expected = 1 + (history is not None)
        if ctr.num_extra_fields != expected:
            raise ValueError(f"MF2Model: the backbone must be built with num_extra_fields={expected}, has "
                             f"{ctr.num_extra_fields}")

    def text_fields(self, batch: Batch) -> torch.Tensor:
        """The extra fields of Eq. 13: float[B, 1 or 2, d]."""
        target = self.item_mlp(self.table[batch.x[:, self.item_col]])
        if self.history_mlp is None:
            return target.unsqueeze(1)
        hist = batch.sequences[self.history]  # [B, L], 0 = padding
        valid = (hist != 0).unsqueeze(-1).to(self.table.dtype)
        mean = (self.table[hist] * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        return torch.stack([target, self.history_mlp(mean)], dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Eq. 14: the backbone over its own fields plus the text fields."""
        return self.ctr(batch, self.text_fields(batch))
