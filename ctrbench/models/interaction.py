"""Interaction layers of the attention, graph, convolution and gating CTR models (AutoInt, FiGNN, FGCNN,
FinalMLP, GDCN), as ``layers.py`` holds those of the MLP and cross-network family.

Every layer takes and returns plain tensors; shapes are in each docstring (``B`` batch, ``F`` fields,
``d`` embedding size, ``D`` flattened input width). Paper equations are quoted next to the lines that
implement them. Linear weights start Xavier-normal with zero bias, as FuxiCTR initialises them, unless a
docstring says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.models.layers import MLP, activation_layer, init_linear

__all__ = ["MultiHeadSelfAttention", "FiGNNLayer", "AttentionalScoring", "FeatureGeneration",
           "FeatureSelectionGate", "BilinearFusion", "GatedCrossNet"]



# ---------------------------------------------------------------- AutoInt


class MultiHeadSelfAttention(nn.Module):
    """AutoInt's interacting layer (Song et al. 2019, Eq. 5–8): multi-head self-attention over fields.

    float[B, F, input_dim] → float[B, F, attention_dim], with H heads of size d' = attention_dim / H:

        α^(h)_{m,k} = softmax_k(<W_Q^(h) e_m, W_K^(h) e_k>)            (Eq. 5; ÷ √d' when use_scale)
        ẽ^(h)_m     = Σ_k α^(h)_{m,k} W_V^(h) e_k                        (Eq. 6)
        ẽ_m         = ẽ^(1)_m ⊕ … ⊕ ẽ^(H)_m                              (Eq. 7)
        e^Res_m     = ReLU(ẽ_m + W_Res e_m)                              (Eq. 8)

    Eq. 5 is an unscaled inner product, and FuxiCTR's default is ``use_scale=False``; the authors' released
    code divides by √d' (``use_scale=True``). W_Res is always a learned matrix as in Eq. 8 (FuxiCTR drops it
    when input_dim == attention_dim). ``layer_norm`` applies LayerNorm after the ReLU, as the authors' code
    does; ``dropout`` drops attention weights, as FuxiCTR does.
    """

    def __init__(self, input_dim: int, attention_dim: int, num_heads: int = 1, use_scale: bool = False,
                 use_residual: bool = True, layer_norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if attention_dim % num_heads:
            raise ValueError(f"attention_dim={attention_dim} is not divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim = num_heads, attention_dim // num_heads
        self.scale = self.head_dim ** -0.5 if use_scale else 1.0
        self.W_q = init_linear(nn.Linear(input_dim, attention_dim, bias=False))
        self.W_k = init_linear(nn.Linear(input_dim, attention_dim, bias=False))
        self.W_v = init_linear(nn.Linear(input_dim, attention_dim, bias=False))
        self.W_res = init_linear(nn.Linear(input_dim, attention_dim, bias=False)) if use_residual else None
        self.layer_norm = nn.LayerNorm(attention_dim) if layer_norm else None
        self.dropout = nn.Dropout(dropout)

    def heads(self, X: torch.Tensor, W: nn.Linear) -> torch.Tensor:
        """Project and split into heads: float[B, F, input_dim] → float[B, H, F, d']."""
        B, F, _ = X.shape
        return W(X).view(B, F, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Q, K, V = self.heads(X, self.W_q), self.heads(X, self.W_k), self.heads(X, self.W_v)
        alpha = torch.softmax(Q @ K.transpose(-1, -2) * self.scale, dim=-1)  # Eq. 5: [B, H, F, F]
        out = self.dropout(alpha) @ V  # Eq. 6: [B, H, F, d']
        out = out.transpose(1, 2).flatten(start_dim=2)  # Eq. 7, heads concatenated: [B, F, H·d']
        if self.W_res is not None:
            out = out + self.W_res(X)  # Eq. 8
        out = torch.relu(out)
        return out if self.layer_norm is None else self.layer_norm(out)


# ---------------------------------------------------------------- FiGNN


class FiGNNLayer(nn.Module):
    """Fi-GNN's gated graph network on the fully connected feature graph (Li et al. 2019, Fi-GNN layer).

    float[B, F, d] → float[B, F, d]. Node i starts from h^1_i (the input) and, for t = 1..T:

        A[i, j]  = softmax_{j≠i}(LeakyReLU(w_wᵀ [h^1_i ; h^1_j])),  A[i, i] = 0     (attentional edge weights)
        a^t_i    = W_in^i Σ_j A[i, j] W_out^j h^{t−1}_j + b_p                        (state aggregation, edge-wise
                                                                                     transformation W_in^i W_out^j)
        h^t_i    = GRU(a^t_i, h^{t−1}_i) + h^1_i                                      (state update + residual)

    Every step t has its own W_in, W_out: [F, d, d] and b_p (``reuse_graph_layer=True`` shares one set);
    the GRU cell is shared by all steps, as in FuxiCTR and the authors' code. ``use_gru=False`` replaces the
    GRU by h^{t−1} + a^t; ``use_residual=False`` drops the + h^1 term. The edge weights are computed once,
    from h^1, with negative slope 0.01.
    """

    def __init__(self, num_fields: int, dim: int, num_layers: int = 3, use_gru: bool = True,
                 use_residual: bool = True, reuse_graph_layer: bool = False) -> None:
        super().__init__()
        if num_fields < 2:
            raise ValueError(f"FiGNN needs at least 2 fields (graph nodes), got {num_fields}")
        self.num_layers, self.use_residual, self.reuse = num_layers, use_residual, reuse_graph_layer
        n = 1 if reuse_graph_layer else num_layers

        def per_node(*shape: int) -> nn.Parameter:  # Xavier normal on each [F, d, d] tensor, as FuxiCTR
            w = torch.empty(n, *shape)
            for m in w:
                nn.init.xavier_normal_(m)
            return nn.Parameter(w)

        self.W_out = per_node(num_fields, dim, dim)
        self.W_in = per_node(num_fields, dim, dim)
        self.b_p = nn.Parameter(torch.zeros(n, dim))
        self.W_attn = init_linear(nn.Linear(2 * dim, 1, bias=False))  # w_w
        self.gru = nn.GRUCell(dim, dim) if use_gru else None
        self.register_buffer("self_loops", torch.eye(num_fields, dtype=torch.bool), persistent=False)

    def edge_weights(self, H: torch.Tensor) -> torch.Tensor:
        """A: float[B, F, F], rows summing to 1 over j ≠ i. w_wᵀ[h_i; h_j] is split into w_1ᵀh_i + w_2ᵀh_j."""
        w1, w2 = self.W_attn.weight[0].chunk(2)
        logits = nn.functional.leaky_relu((H @ w1).unsqueeze(2) + (H @ w2).unsqueeze(1), 0.01)
        return torch.softmax(logits.masked_fill(self.self_loops, float("-inf")), dim=-1)

    def aggregate(self, t: int, A: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        """a^t: float[B, F, d] from the previous states H with step t's weights (state aggregation)."""
        k = 0 if self.reuse else t
        sent = torch.einsum("jed,bjd->bje", self.W_out[k], H)  # W_out^j h_j
        return torch.einsum("ied,bid->bie", self.W_in[k], A @ sent) + self.b_p[k]  # W_in^i Σ_j A[i,j] · + b_p

    def forward(self, H1: torch.Tensor) -> torch.Tensor:
        A = self.edge_weights(H1)
        H = H1
        for t in range(self.num_layers):
            a = self.aggregate(t, A, H)
            if self.gru is not None:
                H = self.gru(a.reshape(-1, a.shape[-1]), H.reshape(-1, H.shape[-1])).view_as(H1)  # state update
            else:
                H = H + a
            if self.use_residual:
                H = H + H1
        return H


class AttentionalScoring(nn.Module):
    """Fi-GNN's attentional scoring layer (Li et al. 2019): float[B, F, d] → logit float[B].

        ŷ_i = MLP_1(h^T_i),   a_i = MLP_2(h^T_i),   ŷ = Σ_i a_i ŷ_i

    MLP_1 is one linear map without bias (FuxiCTR); MLP_2 is one linear map with a sigmoid applied to each
    node's own state, as in the paper and the authors' code (FuxiCTR feeds MLP_2 all nodes at once).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = init_linear(nn.Linear(dim, 1, bias=False))
        self.weight = init_linear(nn.Linear(dim, 1, bias=False))

    def forward(self, H: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(self.weight(H)) * self.score(H)).sum(dim=(1, 2))


# ---------------------------------------------------------------- FGCNN


class FeatureGeneration(nn.Module):
    """FGCNN's feature generation (Liu et al. 2019, Fig. 2): convolution, pooling and recombination.

    float[B, F, d] → float[B, N_new, d]. The embedding matrix is a 1-channel F×d image; layer i applies

        C_i = tanh(Conv_{k_i×1}(S_{i−1}))     (c_i channels, 'same' padding along fields, one column per dim)
        S_i = MaxPool_{p_i×1}(C_i)              (height h_i = ⌈h_{i−1} / p_i⌉)
        R_i = tanh(W_i flatten(S_i) + b_i)      (recombination: h_i · r_i new features of size d)

    and N_new = Σ_i h_i r_i (``num_new_features``). ``batch_norm`` adds BatchNorm2d after each convolution
    (FuxiCTR's ``conv_batch_norm``, default on). Pooling keeps a partial last window (ceil mode), so
    h_i = ⌈h_{i−1} / p_i⌉ for any pooling size; FuxiCTR pads h mod p rows at both ends instead, which gives
    the same heights where PyTorch accepts that padding (it rejects it for some p > 2).
    """

    def __init__(self, num_fields: int, dim: int, channels: Sequence[int], kernel_heights: Sequence[int],
                 pooling_sizes: Sequence[int], recombined_channels: Sequence[int], activation: str = "tanh",
                 batch_norm: bool = True) -> None:
        super().__init__()
        if not (len(channels) == len(kernel_heights) == len(pooling_sizes) == len(recombined_channels)):
            raise ValueError("channels, kernel_heights, pooling_sizes and recombined_channels must have the same "
                             f"length, got {len(channels)}, {len(kernel_heights)}, {len(pooling_sizes)}, "
                             f"{len(recombined_channels)}")
        self.dim = dim
        self.convs, self.recombine = nn.ModuleList(), nn.ModuleList()
        self.heights: list[int] = []
        height, in_channels = num_fields, 1
        for c, k, p, r in zip(channels, kernel_heights, pooling_sizes, recombined_channels, strict=True):
            pad = (k - 1) // 2
            conv: list[nn.Module] = [nn.Conv2d(in_channels, c, kernel_size=(k, 1), padding=(pad, 0))]
            conv += [nn.BatchNorm2d(c)] if batch_norm else []
            conv += [activation_layer(activation), nn.MaxPool2d((p, 1), ceil_mode=True)]
            self.convs.append(nn.Sequential(*conv))
            if height + 2 * pad - k + 1 < 1:
                raise ValueError(f"generation layer {len(self.heights) + 1}: a kernel of height {k} leaves no rows "
                                 f"of the {height} it gets")
            height = math.ceil((height + 2 * pad - k + 1) / p)
            self.recombine.append(nn.Sequential(init_linear(nn.Linear(c * height * dim, r * height * dim)),
                                                activation_layer(activation)))
            self.heights.append(height)
            in_channels = c
        self.num_new_features = sum(h * r for h, r in zip(self.heights, recombined_channels, strict=True))

    def forward(self, E: torch.Tensor) -> torch.Tensor:
        S = E.unsqueeze(1)  # [B, 1, F, d]
        new = []
        for conv, recombine in zip(self.convs, self.recombine, strict=True):
            S = conv(S)  # [B, c_i, h_i, d]
            new.append(recombine(S.flatten(start_dim=1)).view(E.shape[0], -1, self.dim))  # [B, h_i·r_i, d]
        return torch.cat(new, dim=1)


# ---------------------------------------------------------------- FinalMLP


class FeatureSelectionGate(nn.Module):
    """FinalMLP's stream-specific feature gate (Mao et al. 2023, "Feature Selection"): float[B or 1, c] →
    float[B or 1, output_dim] in (0, 2):

        g = 2 · σ(MLP(x_ctx)),   and the stream's input is  h = g ⊙ e

    MLP: ReLU hidden layers ``hidden_units`` and a linear output layer (FuxiCTR's ``fs_hidden_units``).
    The factor 2 centres the weights on 1 at initialisation.
    """

    def __init__(self, context_dim: int, output_dim: int, hidden_units: Sequence[int]) -> None:
        super().__init__()
        self.mlp = MLP(context_dim, hidden_units, activation="relu")
        self.out = init_linear(nn.Linear(self.mlp.output_dim, output_dim))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return 2 * torch.sigmoid(self.out(self.mlp(context)))


class BilinearFusion(nn.Module):
    """FinalMLP's multi-head bilinear fusion (Mao et al. 2023, "Interaction Aggregation"): float[B, D_1],
    float[B, D_2] → logit float[B]. The stream outputs o_1, o_2 are split into k heads o_{1j}, o_{2j}:

        BF(o_1, o_2) = b + w_1ᵀ o_1 + w_2ᵀ o_2 + o_1ᵀ W_3 o_2         (bilinear fusion)
        logit        = Σ_{j=1..k} BF(o_{1j}, o_{2j})                    (multi-head: W_3 block-diagonal)

    The heads' linear terms sum to w_1ᵀ o_1 + w_2ᵀ o_2 over the whole vectors, so they are two Linear
    layers with one bias. W_3: [k, D_1/k, D_2/k], Xavier-normal over its flattened [k·D_1/k·D_2/k, 1] view
    as FuxiCTR's ``InteractionAggregation`` initialises it.
    """

    def __init__(self, x_dim: int, y_dim: int, num_heads: int = 1) -> None:
        super().__init__()
        if x_dim % num_heads or y_dim % num_heads:
            raise ValueError(f"both stream widths ({x_dim}, {y_dim}) must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.w_x = init_linear(nn.Linear(x_dim, 1))  # w_1, b
        self.w_y = init_linear(nn.Linear(y_dim, 1, bias=False))  # w_2
        w = torch.empty(x_dim * y_dim // num_heads, 1)
        nn.init.xavier_normal_(w)
        self.W = nn.Parameter(w.view(num_heads, x_dim // num_heads, y_dim // num_heads))  # W_3 per head

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xh, yh = x.view(x.shape[0], self.num_heads, -1), y.view(y.shape[0], self.num_heads, -1)
        bilinear = torch.einsum("bkx,kxy,bky->b", xh, self.W, yh)  # Σ_j o_{1j}ᵀ W_3^j o_{2j}
        return self.w_x(x).squeeze(-1) + self.w_y(y).squeeze(-1) + bilinear


# ---------------------------------------------------------------- GDCN


class GatedCrossNet(nn.Module):
    """GDCN's gated cross network (Wang et al. 2023, gated cross layer): float[B, D] → float[B, D].

        c_{l+1} = c_0 ⊙ (W^c_l c_l + b_l) ⊙ σ(W^g_l c_l) + c_l

    W^c_l, W^g_l ∈ R^{D×D} without bias, Xavier normal; b_l starts uniform in [0, 1) as in the authors'
    and FuxiCTR's ``GateCorssLayer``. The information gate σ(W^g c_l) is what separates it from DCN-V2's
    cross layer (``CrossNetV2``).
    """

    def __init__(self, input_dim: int, num_layers: int) -> None:
        super().__init__()
        self.W = nn.ModuleList(init_linear(nn.Linear(input_dim, input_dim, bias=False)) for _ in range(num_layers))
        self.Wg = nn.ModuleList(init_linear(nn.Linear(input_dim, input_dim, bias=False)) for _ in range(num_layers))
        self.b = nn.ParameterList(nn.Parameter(torch.rand(input_dim)) for _ in range(num_layers))

    def forward(self, c0: torch.Tensor) -> torch.Tensor:
        c = c0
        for W, Wg, b in zip(self.W, self.Wg, self.b, strict=True):
            c = c0 * (W(c) + b) * torch.sigmoid(Wg(c)) + c  # feature crossing ⊙ information gate + residual
        return c
