"""FinalMLP (Mao et al., AAAI 2023, "FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction"), Fig. 1:
two MLP streams with stream-specific feature selection, fused by multi-head bilinear interaction aggregation.

    e          = [e_1; …; e_F]                                  (embedding layer, D = F·d)
    h_s        = 2σ(MLP_g,s(x_s)) ⊙ e,   s = 1, 2                  (feature selection; x_s = context, see below)
    o_s        = MLP_s(h_s)                                       (the two streams)
    q          = [o_1; o_2]
    logit      = Σ_j (b_j + w_1jᵀ o_1j + w_2jᵀ o_2j + o_1jᵀ W_3j o_2j)  (multi-head bilinear fusion = ``head``)

The gate of stream s is conditioned on the embeddings of the fields named in ``fs{s}_context`` (taken from
E, so they share the model's tables; FuxiCTR embeds them with separate ones), or, when that is empty, on
a learnable vector of size d. That vector starts N(0, 0.01²) rather than at FuxiCTR's zeros, where ReLU'(0)
= 0 would leave the gate's hidden layers without gradient. Defaults are FuxiCTR's FinalMLP config
template: streams (1024, 512) and (1024, 512, 256), gate hidden units (1024, 512), 2 heads, ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.data.types import Field
from ctrbench.models.base import CTRBackbone, backbone
from ctrbench.models.interaction import BilinearFusion, FeatureSelectionGate
from ctrbench.models.layers import MLP
from ctrbench.registry import did_you_mean


@backbone(
    "finalmlp",
    summary='FinalMLP: two MLP streams with feature-selection gates, fused by multi-head bilinear aggregation',
    paper='Mao et al., FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction, AAAI 2023',
    q=('the two stream outputs [o_1; o_2], [B, mlp1_hidden_units[-1] + mlp2_hidden_units[-1]]; logit = the '
       'multi-head bilinear fusion of o_1 and o_2'),
)
class FinalMLP(CTRBackbone):
    """FinalMLP (``use_fs=False``: DualMLP with bilinear fusion).

    Args:
        fields: the dataset's fields; the categorical ones are embedded.
        embed_dim: embedding size d.
        num_extra_fields: k extra field embeddings the caller appends to E; both streams see them.
        mlp1_hidden_units, mlp2_hidden_units: widths of the two streams (each divisible by ``num_heads``).
        activation: hidden activation of both streams.
        mlp1_dropout, mlp2_dropout: dropout after each hidden layer of a stream.
        mlp1_batch_norm, mlp2_batch_norm: BatchNorm1d after each hidden Linear of a stream.
        use_fs: the feature-selection gates.
        fs_hidden_units: hidden widths of each gate's MLP.
        fs1_context, fs2_context: field names whose embeddings condition each gate; empty: a learned vector.
        num_heads: heads k of the bilinear fusion.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 mlp1_hidden_units: Sequence[int] = (1024, 512), mlp2_hidden_units: Sequence[int] = (1024, 512, 256),
                 activation: str = "relu", mlp1_dropout: float = 0.0, mlp2_dropout: float = 0.0,
                 mlp1_batch_norm: bool = False, mlp2_batch_norm: bool = False, use_fs: bool = True,
                 fs_hidden_units: Sequence[int] = (1024, 512), fs1_context: Sequence[str] = (),
                 fs2_context: Sequence[str] = (), num_heads: int = 2) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        D = self.num_inputs * embed_dim
        self.mlp1 = MLP(D, mlp1_hidden_units, mlp1_dropout, mlp1_batch_norm, activation)
        self.mlp2 = MLP(D, mlp2_hidden_units, mlp2_dropout, mlp2_batch_norm, activation)
        names = [f.name for f in self.fields]
        for name in (*fs1_context, *fs2_context):
            if name not in names:
                raise ValueError(f"finalmlp: unknown context field '{name}'{did_you_mean(name, names)}; "
                                 f"fields: {', '.join(names)}")
        self.context = [[names.index(n) for n in fs1_context], [names.index(n) for n in fs2_context]]
        self.context_vectors = nn.ParameterList(
            nn.Parameter(torch.randn(1, embed_dim) * 0.01) for idx in self.context if use_fs and not idx)
        self.gates = nn.ModuleList(FeatureSelectionGate(embed_dim * max(1, len(idx)), D, fs_hidden_units)
                                   for idx in self.context) if use_fs else None
        self.fusion = BilinearFusion(self.mlp1.output_dim, self.mlp2.output_dim, num_heads)
        self.hidden_dim = self.mlp1.output_dim + self.mlp2.output_dim

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, F(+k), d] → q = [o_1; o_2]: float[B, hidden_dim]."""
        e = E.flatten(start_dim=1)
        h1 = h2 = e
        if self.gates is not None:
            vectors = iter(self.context_vectors)
            x1, x2 = (E[:, idx].flatten(start_dim=1) if idx else next(vectors) for idx in self.context)
            h1, h2 = self.gates[0](x1) * e, self.gates[1](x2) * e  # feature selection: 2σ(MLP(x_s)) ⊙ e
        return torch.cat([self.mlp1(h1), self.mlp2(h2)], dim=-1)

    def head(self, q: torch.Tensor) -> torch.Tensor:
        """Multi-head bilinear fusion of o_1 = q[:, :D_1] and o_2 = q[:, D_1:]: float[B]."""
        return self.fusion(q[:, :self.mlp1.output_dim], q[:, self.mlp1.output_dim:])
