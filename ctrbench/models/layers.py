"""Layers shared by the built-in CTR backbones (FuxiCTR's ``layers`` package, in one module).

Every layer takes and returns plain tensors; shapes are in each docstring (``B`` batch, ``F`` fields,
``d`` embedding size, ``D`` flattened input width). Paper equations are quoted next to the lines that
implement them. Linear weights are initialised as FuxiCTR does (Xavier normal, zero bias), so a model
built here starts where the same FuxiCTR model would.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "CrossNetV1", "CrossNetV2", "CrossNetMix", "CIN", "InnerProductLayer", "fm_pairwise",
           "activation_layer"]

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def activation_layer(name: str) -> nn.Module:
    """An activation module by (case-insensitive) name: relu, tanh, sigmoid, leaky_relu, prelu, gelu, silu."""
    cls = _ACTIVATIONS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown activation '{name}'; known: {', '.join(_ACTIVATIONS)}")
    return cls()


def init_linear(layer: nn.Linear) -> nn.Linear:
    """Xavier-normal weights and zero bias (FuxiCTR's initialisation), shared by every built-in layer."""
    nn.init.xavier_normal_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """Feed-forward tower: per hidden layer Linear → (BatchNorm) → activation → (Dropout).

    float[B, input_dim] → float[B, output_dim], where ``output_dim`` is ``hidden_units[-1]`` (or
    ``input_dim`` when ``hidden_units`` is empty: the identity). There is no output projection: the
    backbone's ``head`` makes the logit, so the tower's last hidden layer is the ``q`` methods read.
    """

    def __init__(self, input_dim: int, hidden_units: Sequence[int], dropout: float = 0.0,
                 batch_norm: bool = False, activation: str = "relu") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = int(input_dim)
        for units in hidden_units:
            layers.append(init_linear(nn.Linear(width, int(units))))
            if batch_norm:
                layers.append(nn.BatchNorm1d(int(units)))
            layers.append(activation_layer(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(units)
        self.net = nn.Sequential(*layers)
        self.input_dim = int(input_dim)
        self.output_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float[B, input_dim] → float[B, output_dim]."""
        return self.net(x)


class CrossNetV1(nn.Module):
    """DCN's cross network (Wang et al. 2017, Eq. 3): a rank-one cross per layer.

    float[B, D] → float[B, D].  Layer l:  x_{l+1} = x_0 · (x_lᵀ w_l) + b_l + x_l,  w_l, b_l ∈ R^D.
    """

    def __init__(self, input_dim: int, num_layers: int) -> None:
        super().__init__()
        self.w = nn.ModuleList(init_linear(nn.Linear(input_dim, 1, bias=False)) for _ in range(num_layers))
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(input_dim)) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, b in zip(self.w, self.b, strict=True):
            x = x0 * w(x) + b + x  # Eq. 3: x0 [B, D] * (x_lᵀ w_l) [B, 1] + b_l [D] + x_l
        return x


class CrossNetV2(nn.Module):
    """DCN-V2's cross network (Wang et al. 2021, Eq. 1): a full-matrix cross per layer.

    float[B, D] → float[B, D].  Layer l:  x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l,  W_l ∈ R^{D×D}.
    """

    def __init__(self, input_dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(init_linear(nn.Linear(input_dim, input_dim)) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x  # Eq. 1: x0 ⊙ (W_l x_l + b_l) + x_l
        return x


class CrossNetMix(nn.Module):
    """DCN-V2's mixture of low-rank cross experts, "DCN-Mix" (Wang et al. 2021, Eq. 3–4).

    float[B, D] → float[B, D].  With K experts of rank r per layer l (g = tanh):

        E_i(x_l) = x_0 ⊙ (U_l^i · g(C_l^i · g(V_l^iᵀ x_l)) + b_l)        (Eq. 4, expert i)
        x_{l+1}  = Σ_i G_i(x_l) E_i(x_l) + x_l,   G(x) = softmax_i(g_iᵀ x)  (Eq. 3, gated mixture)

    U, V: [L, K, D, r]; C: [L, K, r, r]; b: [L, D] shared by a layer's experts; the gate vectors
    g_i ∈ R^D are shared across layers, as in the authors' and FuxiCTR's code. The experts of a layer are
    computed together with einsum instead of a Python loop over experts.
    """

    def __init__(self, input_dim: int, num_layers: int, low_rank: int = 32, num_experts: int = 4) -> None:
        super().__init__()
        self.num_layers, self.num_experts, self.low_rank = num_layers, num_experts, low_rank

        def xavier(*shape: int) -> nn.Parameter:  # Xavier normal per expert matrix (fans = its last two dims)
            w = torch.empty(*shape)
            for m in w.view(-1, shape[-2], shape[-1]):
                nn.init.xavier_normal_(m)
            return nn.Parameter(w)

        self.U = xavier(num_layers, num_experts, input_dim, low_rank)
        self.V = xavier(num_layers, num_experts, input_dim, low_rank)
        self.C = xavier(num_layers, num_experts, low_rank, low_rank)
        self.b = nn.Parameter(torch.zeros(num_layers, input_dim))
        self.gating = init_linear(nn.Linear(input_dim, num_experts, bias=False))  # row i = g_i

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for l in range(self.num_layers):
            v = torch.tanh(torch.einsum("bd,kdr->bkr", x, self.V[l]))  # g(V_lᵀ x_l): [B, K, r]
            v = torch.tanh(torch.einsum("kst,bkt->bks", self.C[l], v))  # g(C_l ·): [B, K, r]
            uv = torch.einsum("kdr,bkr->bkd", self.U[l], v)  # U_l ·: [B, K, D]
            experts = x0.unsqueeze(1) * (uv + self.b[l])  # Eq. 4, E_i(x_l): [B, K, D]
            gates = torch.softmax(self.gating(x), dim=-1)  # G(x_l): [B, K]
            x = torch.einsum("bk,bkd->bd", gates, experts) + x  # Eq. 3: Σ_i G_i E_i + x_l
        return x


def fm_pairwise(E: torch.Tensor) -> torch.Tensor:
    """FM's second-order term in O(F·d) (Rendle 2010, Lemma 3.1), before the sum over d.

    float[B, F, d] → float[B, d]:  Σ_{i<j} e_i ⊙ e_j = ½ ((Σ_i e_i)² − Σ_i e_i²).
    """
    return 0.5 * (E.sum(dim=1).pow(2) - E.pow(2).sum(dim=1))


class InnerProductLayer(nn.Module):
    """PNN's inner-product signals (Qu et al. 2016, Eq. 5 with g(f_i, f_j) = <f_i, f_j>), one per field pair.

    float[B, F, d] → float[B, F(F−1)/2]:  p = (<e_i, e_j>)_{i<j}, pairs in row-major order
    (0,1), (0,2), …, (0,F−1), (1,2), …, as FuxiCTR's ``InnerProductInteraction(output="inner_product")``.
    """

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        self.num_fields = num_fields
        self.num_pairs = num_fields * (num_fields - 1) // 2
        self.register_buffer("pairs", torch.triu_indices(num_fields, num_fields, offset=1), persistent=False)

    def forward(self, E: torch.Tensor) -> torch.Tensor:
        gram = torch.bmm(E, E.transpose(1, 2))  # <e_i, e_j> for all i, j: [B, F, F]
        return gram[:, self.pairs[0], self.pairs[1]]  # the upper triangle i < j: [B, F(F−1)/2]


class CIN(nn.Module):
    """xDeepFM's Compressed Interaction Network (Lian et al. 2018, Eq. 6–7), sum-pooled feature maps.

    float[B, m, D] → float[B, Σ_k H_k], with m fields of size D (= d) and H_k feature maps in layer k:

        X^k_{h,*} = Σ_{i=1}^{H_{k−1}} Σ_{j=1}^{m} W^{k,h}_{ij} (X^{k−1}_{i,*} ∘ X^0_{j,*})     (Eq. 6, X^0 = E)
        p^k_h     = Σ_{t=1}^{D} X^k_{h,t},   p^+ = [p^1; …; p^T]                                 (Eq. 7)

    W^k: [H_k, H_{k−1}, m], no bias and no activation, as Eq. 6 (FuxiCTR's Conv1d adds a bias per feature map).
    Every layer's maps go to the output and to the next layer ("direct" connections, no split-half). Each
    W^k is initialised Xavier-normal as the equivalent ``Conv1d(H_{k−1}·m, H_k, 1)`` is in FuxiCTR.
    """

    def __init__(self, num_fields: int, hidden_units: Sequence[int]) -> None:
        super().__init__()
        self.num_fields = num_fields
        self.hidden_units = [int(h) for h in hidden_units]
        self.weights = nn.ParameterList()
        prev = num_fields
        for units in self.hidden_units:
            w = torch.empty(units, prev * num_fields)
            nn.init.xavier_normal_(w)  # fans of the flattened [H_k, H_{k−1}·m] map
            self.weights.append(nn.Parameter(w.view(units, prev, num_fields)))
            prev = units
        self.output_dim = sum(self.hidden_units)

    def forward(self, X0: torch.Tensor) -> torch.Tensor:
        B, m, D = X0.shape
        X = X0
        pooled = []
        for W in self.weights:
            Z = torch.einsum("bid,bjd->bijd", X, X0).reshape(B, -1, D)  # X^{k−1}_{i,*} ∘ X^0_{j,*}: [B, H_{k−1}·m, D]
            X = torch.matmul(W.flatten(start_dim=1), Z)  # Eq. 6, Σ_i Σ_j W^{k,h}_{ij} (·): [B, H_k, D]
            pooled.append(X.sum(dim=-1))  # Eq. 7, sum pooling over the embedding dimension: [B, H_k]
        return torch.cat(pooled, dim=-1)


CROSS_STRUCTURES = ("parallel", "stacked", "crossnet_only")


def cross_dnn_tower(structure: str, input_dim: int, hidden_units: Sequence[int], *, dropout: float = 0.0,
                    batch_norm: bool = False, activation: str = "relu") -> tuple[MLP | None, int]:
    """The DNN tower of a DCN-family model and the width of q for its ``structure`` (DCN-V2 Fig. 2).

    Shared by DCNv2 and GDCN, which differ only in their cross layers: ``parallel`` q = [cross(x0); MLP(x0)],
    ``stacked`` q = MLP(cross(x0)), ``crossnet_only`` q = cross(x0) (no tower).
    """
    if structure not in CROSS_STRUCTURES:
        raise ValueError(f"model_structure must be one of {', '.join(CROSS_STRUCTURES)}, got '{structure}'")
    if structure == "crossnet_only":
        return None, input_dim
    dnn = MLP(input_dim, hidden_units, dropout=dropout, batch_norm=batch_norm, activation=activation)
    return dnn, (input_dim + dnn.output_dim if structure == "parallel" else dnn.output_dim)


def cross_dnn_forward(structure: str, x0: torch.Tensor, crossnet: nn.Module, dnn: nn.Module | None) -> torch.Tensor:
    """q of a DCN-family model from x0 [B, D] (see `cross_dnn_tower`)."""
    cross = crossnet(x0)
    if dnn is None:
        return cross
    if structure == "stacked":
        return dnn(cross)  # Fig. 2a
    return torch.cat([cross, dnn(x0)], dim=-1)  # Fig. 2b
