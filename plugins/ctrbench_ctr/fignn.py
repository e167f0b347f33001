"""Fi-GNN (Li et al., CIKM 2019, "Fi-GNN: Modeling Feature Interactions via Graph Neural Networks for CTR
Prediction"): embedding → multi-head self-attention → gated GNN on the feature graph → attentional scoring.

    H^1 = ReLU(MultiHeadAttention(E) + W_Res E)                    (multi-head self-attention layer, AutoInt's)
    A   = softmax_{j≠i}(LeakyReLU(w_wᵀ [h^1_i ; h^1_j]))             (attentional edge weights, no self-loops)
    a^t_i = W_in^i Σ_j A[i, j] W_out^j h^{t−1}_j + b_p                (state aggregation)
    h^t_i = GRU(a^t_i, h^{t−1}_i) + h^1_i,   t = 1..T                 (state update, residual)
    q   = flatten(H^T),   logit = Σ_i σ(MLP_2(h^T_i)) · MLP_1(h^T_i)   (attentional scoring = ``head``)

Defaults: T = ``gnn_layers`` = 3 with a GRU, residual, a fresh graph layer per step (FuxiCTR's defaults),
and the self-attention layer of the authors' code (2 heads, 64 units, scaled by 1/√d', residual), without
the ReLU that code puts on the Q/K/V projections or its LayerNorm.
FuxiCTR's FiGNN feeds the embeddings to the GNN directly: ``use_self_attention=False`` reproduces that.
The output is the attentional scoring itself (no linear head), so ``head`` is that layer and ``q`` is the
final node states it reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.types import Field
from ctrbench.models.base import CTRBackbone, backbone
from ctrbench.models.interaction import AttentionalScoring, FiGNNLayer, MultiHeadSelfAttention


@backbone(
    "fignn",
    summary='Fi-GNN: gated graph neural network over the fully connected feature-field graph',
    paper='Li et al., Fi-GNN: Modeling Feature Interactions via Graph Neural Networks for CTR Prediction, CIKM 2019',
    q=('the final node states h^T flattened, [B, F*attention_dim] (F*embed_dim without self-attention; F counts '
       'extra fields); logit = attentional scoring of q'),
)
class FiGNN(CTRBackbone):
    """Feature Interaction Graph Neural Network.

    Args:
        fields: the dataset's fields; each categorical field is a graph node.
        embed_dim: embedding size d.
        num_extra_fields: k extra field embeddings the caller appends to E; each becomes a node.
        gnn_layers: propagation steps T.
        use_gru: GRU state update (otherwise h^t = h^{t−1} + a^t).
        use_residual: add the initial state h^1 after every step.
        reuse_graph_layer: one set of W_in, W_out, b_p for all steps.
        use_self_attention: the multi-head self-attention layer before the graph (the paper; FuxiCTR omits it).
        num_heads: its heads.
        attention_dim: its output width, which is the node-state size.
        use_scale: scale its attention logits by 1/√d'.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 gnn_layers: int = 3, use_gru: bool = True, use_residual: bool = True,
                 reuse_graph_layer: bool = False, use_self_attention: bool = True, num_heads: int = 2,
                 attention_dim: int = 64, use_scale: bool = True) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.attention = None
        self.state_dim = embed_dim
        if use_self_attention:
            self.attention = MultiHeadSelfAttention(embed_dim, attention_dim, num_heads, use_scale=use_scale)
            self.state_dim = attention_dim
        self.gnn = FiGNNLayer(self.num_inputs, self.state_dim, gnn_layers, use_gru=use_gru,
                              use_residual=use_residual, reuse_graph_layer=reuse_graph_layer)
        self.scoring = AttentionalScoring(self.state_dim)
        self.hidden_dim = self.num_inputs * self.state_dim

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), d] → q = flatten(H^T): float[B, F(+k)·state_dim]."""
        H1 = E if self.attention is None else self.attention(E)  # initial node states
        return self.gnn(H1).flatten(start_dim=1)

    def head(self, q: torch.Tensor) -> torch.Tensor:
        """Attentional scoring: Σ_i a_i ŷ_i over the nodes of q, float[B]."""
        return self.scoring(q.view(q.shape[0], -1, self.state_dim))

