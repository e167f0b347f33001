"""AutoInt (Song et al., CIKM 2019, "AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural
Networks"), Fig. 1 and Eq. 5–9; AutoInt+, the paper's variant jointly trained with a DNN, adds one in parallel.

    E^0 = [e_1; …; e_F]                                                 (embedding layer, Eq. 2)
    E^l = ReLU(MultiHeadAttention(E^{l−1}) + W_Res E^{l−1})              (interacting layer, Eq. 5–8)
    q   = flatten(E^L)           logit = wᵀ q + b                          (output layer, Eq. 9)
    q   = [flatten(E^L); MLP(flatten(E^0))]                              (AutoInt+: the DNN joins the logit)

Defaults follow the paper's setting: 3 interacting layers, 2 heads of d' = 32 (``attention_dim`` is the
width of all heads together, H·d' = 64, as FuxiCTR's key), residual connections, and the unscaled
inner-product attention of Eq. 5 (``use_scale=False``, also FuxiCTR's default; the authors' released code
scales by 1/√d'). ``autoint`` has no DNN; ``autoint+`` has the ``(400, 400, 400)`` tower ``dnn`` uses.
Summing the two parts' logits (FuxiCTR) equals one linear head on their concatenation, which is ``q``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.data.types import Field
from ctrbench.models.base import CTRBackbone, backbone
from ctrbench.models.interaction import MultiHeadSelfAttention
from ctrbench.models.layers import MLP


@backbone(
    "autoint",
    summary='AutoInt: stacked multi-head self-attention over field embeddings, with residual connections',
    paper=('Song et al., AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural Networks, '
           'CIKM 2019'),
    q=('the flattened output of the last interacting layer, [B, F*attention_dim], followed by the DNN\'s last '
       'hidden layer when dnn_hidden_units is set (AutoInt+) (F counts extra fields)'),
)
class AutoInt(CTRBackbone):
    """AutoInt (``dnn_hidden_units=()``) or AutoInt+ (a DNN next to the attention layers).

    Args:
        fields: the dataset's fields; the categorical ones are embedded.
        embed_dim: embedding size d.
        num_extra_fields: k extra field embeddings the caller appends to E; they attend like fields.
        attention_layers: number of interacting layers L.
        num_heads: attention heads H per layer.
        attention_dim: output width of each interacting layer, H·d' (divisible by ``num_heads``).
        use_scale: divide the attention logits by √d' (the authors' code; Eq. 5 does not).
        use_residual: the W_Res residual of Eq. 8.
        layer_norm: LayerNorm after each interacting layer (the authors' code).
        attention_dropout: dropout on the attention weights.
        dnn_hidden_units: widths of the parallel DNN (AutoInt+); empty for plain AutoInt.
        activation: DNN hidden activation.
        dropout: dropout after each DNN hidden layer.
        batch_norm: BatchNorm1d after each DNN hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 attention_layers: int = 3, num_heads: int = 2, attention_dim: int = 64, use_scale: bool = False,
                 use_residual: bool = True, layer_norm: bool = False, attention_dropout: float = 0.0,
                 dnn_hidden_units: Sequence[int] = (), activation: str = "relu", dropout: float = 0.0,
                 batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.attention = nn.Sequential(*(
            MultiHeadSelfAttention(embed_dim if l == 0 else attention_dim, attention_dim, num_heads,
                                   use_scale=use_scale, use_residual=use_residual, layer_norm=layer_norm,
                                   dropout=attention_dropout)
            for l in range(attention_layers)))
        width = self.num_inputs * (attention_dim if attention_layers else embed_dim)
        self.dnn = None
        if dnn_hidden_units:
            self.dnn = MLP(self.num_inputs * embed_dim, dnn_hidden_units, dropout=dropout, batch_norm=batch_norm,
                           activation=activation)
            width += self.dnn.output_dim
        self.build_head(width)

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), d] → q: float[B, hidden_dim]."""
        q = self.attention(E).flatten(start_dim=1)  # Eq. 5–8, L times; flattened for Eq. 9
        if self.dnn is None:
            return q
        return torch.cat([q, self.dnn(E.flatten(start_dim=1))], dim=-1)  # AutoInt+


@backbone(
    "autoint+",
    summary='AutoInt+: AutoInt with a parallel DNN whose output joins the logit',
    paper=('Song et al., AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural Networks, '
           'CIKM 2019'),
    q=('[flattened last interacting layer, [B, F*attention_dim]; DNN last hidden layer, [B, dnn_hidden_units[-1]]] '
       '(F counts extra fields)'),
)
class AutoIntPlus(AutoInt):
    """AutoInt+: `AutoInt` with ``dnn_hidden_units`` defaulting to ``(400, 400, 400)``; same keys."""

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 attention_layers: int = 3, num_heads: int = 2, attention_dim: int = 64, use_scale: bool = False,
                 use_residual: bool = True, layer_norm: bool = False, attention_dropout: float = 0.0,
                 dnn_hidden_units: Sequence[int] = (400, 400, 400), activation: str = "relu", dropout: float = 0.0,
                 batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim=embed_dim, num_extra_fields=num_extra_fields,
                         attention_layers=attention_layers, num_heads=num_heads, attention_dim=attention_dim,
                         use_scale=use_scale, use_residual=use_residual, layer_norm=layer_norm,
                         attention_dropout=attention_dropout, dnn_hidden_units=dnn_hidden_units,
                         activation=activation, dropout=dropout, batch_norm=batch_norm)
