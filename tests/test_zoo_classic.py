"""The classic CTR zoo: DeepFM, Wide&Deep, IPNN, DCN and xDeepFM (plugins/ctrbench_ctr) and their layers.

Each model passes the conformance kit, and its defining computation is checked against a direct
computation written here from the paper's equations, using the model's own weights (all randomised, in
float64, so no term is negligible).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from ctrbench.models.layers import CIN, MLP, InnerProductLayer
from ctrbench.testing import check_ctr_backbone, synthetic_batch, synthetic_fields
from ctrbench_ctr import plugin
from ctrbench_ctr.dcn import DCN
from ctrbench_ctr.deepfm import DeepFM
from ctrbench_ctr.ipnn import IPNN
from ctrbench_ctr.widedeep import WideDeep
from ctrbench_ctr.xdeepfm import XDeepFM

# Every registered backbone passes the kit with its defaults in tests/test_conformance.py; here, the configs
# that build a structurally different model.
VARIANTS = [
    pytest.param(DeepFM, {"hidden_units": (16, 8), "dropout": 0.2, "batch_norm": True}, id="deepfm-bn-dropout"),
    pytest.param(WideDeep, {"hidden_units": (8,), "activation": "tanh"}, id="widedeep-tanh"),
    pytest.param(IPNN, {"hidden_units": (16, 8), "batch_norm": True}, id="ipnn-bn"),
    pytest.param(DCN, {"num_cross_layers": 1, "dnn_hidden_units": (8,), "dropout": 0.1}, id="dcn-small"),
    pytest.param(DCN, {"dnn_hidden_units": ()}, id="dcn-crossnet-only"),
    pytest.param(XDeepFM, {"cin_hidden_units": (5,), "dnn_hidden_units": (8,), "batch_norm": True}, id="xdeepfm-bn"),
    pytest.param(XDeepFM, {"cin_hidden_units": (4, 3), "dnn_hidden_units": ()}, id="xdeepfm-no-dnn"),
]


@pytest.mark.parametrize(("factory", "config"), VARIANTS)
def test_classic_backbone_variant_passes_the_conformance_kit(factory, config):
    check_ctr_backbone(factory, config=config)


def test_the_plugin_discovers_the_five_classic_models():
    names = {cls.__ctrbench_backbone__.name: cls for cls in plugin.discover()}
    assert {"deepfm": DeepFM, "widedeep": WideDeep, "ipnn": IPNN, "dcn": DCN, "xdeepfm": XDeepFM}.items() \
        <= names.items()


# ---------------------------------------------------------------- helpers: the paper's equations, by hand


def _randomised(model: nn.Module, std: float = 0.3) -> nn.Module:
    """The model in float64, eval mode, with every parameter drawn N(0, std²) (biases included)."""
    torch.manual_seed(1)
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=std)
    return model


def _mlp(mlp: MLP, x: torch.Tensor) -> torch.Tensor:
    """A ReLU tower without batch norm or dropout: h ← relu(W h + b) per layer."""
    for layer in mlp.net:
        if isinstance(layer, nn.Linear):
            x = x @ layer.weight.T + layer.bias
        else:
            assert isinstance(layer, nn.ReLU), layer
            x = x.clamp_min(0)
    return x


def _embeddings(model, fields, batch) -> list[torch.Tensor]:
    return [model.embedding.lookup(f.name, batch.x[:, j]) for j, f in enumerate(fields)]


def _first_order(table, fields, batch) -> torch.Tensor:
    return sum(table.lookup(f.name, batch.x[:, j])[:, 0] for j, f in enumerate(fields))


def _cin_by_loops(cin: CIN, E: torch.Tensor) -> torch.Tensor:
    """Eq. 6 with explicit sums over h, i, j for each sample, then Eq. 7's sum pooling."""
    out = []
    for X0 in E:  # [m, D]
        X, pooled = X0, []
        for W in cin.weights:
            H, H_prev, m = W.shape
            Xk = torch.zeros(H, X0.shape[1], dtype=X0.dtype)
            for h in range(H):
                for i in range(H_prev):
                    for j in range(m):
                        Xk[h] += W[h, i, j] * (X[i] * X0[j])  # W^{k,h}_{ij} (X^{k−1}_{i,*} ∘ X^0_{j,*})
            pooled += [Xk[h].sum() for h in range(H)]  # p^k_h = Σ_t X^k_{h,t}
            X = Xk
        out.append(torch.stack(pooled))
    return torch.stack(out)


FIELDS = synthetic_fields()


# ---------------------------------------------------------------- DeepFM


def test_deepfm_logit_is_first_order_plus_pairwise_inner_products_plus_the_dnn_logit():
    batch = synthetic_batch(FIELDS, batch_size=7)
    model = _randomised(DeepFM(FIELDS, embed_dim=4, hidden_units=(8, 6)))
    e = _embeddings(model, FIELDS, batch)
    first = _first_order(model.first_order, FIELDS, batch)  # <w, x>
    pairs = sum((e[i] * e[j]).sum(-1) for i, j in itertools.combinations(range(len(FIELDS)), 2))
    a = _mlp(model.dnn, torch.cat(e, dim=-1))  # a^{|H|}
    y_dnn = a @ model.output.weight[0] + model.output.bias[0]  # W^{|H|+1} a^{|H|} + b^{|H|+1}
    torch.testing.assert_close(model(batch), first + pairs + y_dnn)  # Eq. 1: y_FM + y_DNN

    q = model.interact(model.embed(batch))
    assert model.hidden_dim == 4 + 6 == q.shape[1]
    torch.testing.assert_close(q[:, 4:], a)
    torch.testing.assert_close(q[:, :4].sum(-1), pairs)
    vocab = sum(f.vocab_size for f in FIELDS)
    mlp_params = sum(p.numel() for p in model.dnn.parameters())
    assert sum(p.numel() for p in model.parameters()) == vocab * (4 + 1) + mlp_params + 6 + 1  # one bias only


# ---------------------------------------------------------------- Wide & Deep


def test_widedeep_logit_is_the_wide_linear_model_plus_the_deep_logit():
    batch = synthetic_batch(FIELDS, batch_size=7)
    model = _randomised(WideDeep(FIELDS, embed_dim=4, hidden_units=(8, 6)))
    wide = _first_order(model.wide, FIELDS, batch)
    deep = _mlp(model.dnn, torch.cat(_embeddings(model, FIELDS, batch), dim=-1))
    expected = wide + deep @ model.output.weight[0] + model.output.bias[0]  # Eq. 3
    torch.testing.assert_close(model(batch), expected)
    assert model.hidden_dim == 6
    torch.testing.assert_close(model.interact(model.embed(batch)), deep)


# ---------------------------------------------------------------- IPNN


def test_inner_product_layer_equals_the_double_loop_over_field_pairs():
    E = torch.randn(5, 6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    layer = InnerProductLayer(6)
    explicit = torch.stack([(E[:, i] * E[:, j]).sum(-1) for i in range(6) for j in range(i + 1, 6)], dim=1)
    assert layer.num_pairs == 15
    torch.testing.assert_close(layer(E), explicit)


def test_ipnn_q_is_the_mlp_over_flattened_embeddings_and_inner_products():
    batch = synthetic_batch(FIELDS, batch_size=7)
    model = _randomised(IPNN(FIELDS, embed_dim=4, num_extra_fields=2, hidden_units=(8, 6)))
    extra = torch.randn(7, 2, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    e = _embeddings(model, FIELDS, batch) + [extra[:, 0], extra[:, 1]]
    p = [(e[i] * e[j]).sum(-1, keepdim=True) for i, j in itertools.combinations(range(7), 2)]
    assert len(p) == 21 and model.mlp.input_dim == 7 * 4 + 21
    q = _mlp(model.mlp, torch.cat(e + p, dim=-1))  # l_1 = relu(W_1 [z; p] + b_1), …
    torch.testing.assert_close(model.interact(torch.cat([model.embed(batch), extra], dim=1)), q)
    torch.testing.assert_close(model(batch, extra), q @ model.output.weight[0] + model.output.bias[0])


# ---------------------------------------------------------------- DCN


def test_dcn_q_is_the_cross_network_next_to_the_dnn_and_each_cross_layer_follows_eq_3():
    batch = synthetic_batch(FIELDS, batch_size=7)
    model = _randomised(DCN(FIELDS, embed_dim=4, num_cross_layers=3, dnn_hidden_units=(8, 6)))
    x0 = torch.cat(_embeddings(model, FIELDS, batch), dim=-1)
    x = x0
    for w, b in zip(model.crossnet.w, model.crossnet.b, strict=True):
        x = x0 * (x @ w.weight[0]).unsqueeze(-1) + b + x  # x_{l+1} = x_0 (x_lᵀ w_l) + b_l + x_l
    h = _mlp(model.dnn, x0)
    q = model.interact(model.embed(batch))
    assert model.hidden_dim == 20 + 6 == q.shape[1]
    torch.testing.assert_close(q, torch.cat([x, h], dim=-1))  # Eq. 5: [x_{L_1}; h_{L_2}]
    torch.testing.assert_close(model(batch), torch.cat([x, h], dim=-1) @ model.output.weight[0]
                               + model.output.bias[0])


def test_dcn_without_a_dnn_is_the_cross_network_alone():
    model = DCN(FIELDS, embed_dim=4, num_extra_fields=1, dnn_hidden_units=())
    assert model.dnn is None and model.hidden_dim == (5 + 1) * 4


# ---------------------------------------------------------------- CIN and xDeepFM


def test_cin_layers_follow_eq_6_and_sum_pooling():
    E = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cin = CIN(4, (3, 2)).double()
    assert [tuple(W.shape) for W in cin.weights] == [(3, 4, 4), (2, 3, 4)] and cin.output_dim == 5
    torch.testing.assert_close(cin(E), _cin_by_loops(cin, E))
    W = cin.weights[0]  # the first layer in one einsum: X^1_h = Σ_{i,j} W_{hij} (e_i ∘ e_j)
    torch.testing.assert_close(cin(E)[:, :3], torch.einsum("hij,bid,bjd->bh", W, E, E))


def test_cin_has_no_bias_and_feeds_every_map_forward():
    cin = CIN(6, (4, 4, 4))
    assert sum(p.numel() for p in cin.parameters()) == 4 * 6 * 6 + 2 * (4 * 4 * 6)


def test_xdeepfm_logit_is_linear_plus_cin_plus_dnn():
    batch = synthetic_batch(FIELDS, batch_size=4)
    model = _randomised(XDeepFM(FIELDS, embed_dim=3, cin_hidden_units=(3, 2), dnn_hidden_units=(8, 6)))
    e = _embeddings(model, FIELDS, batch)
    linear = _first_order(model.first_order, FIELDS, batch)  # w_linearᵀ a
    p_plus = _cin_by_loops(model.cin, torch.stack(e, dim=1))  # [B, 3 + 2]
    x_dnn = _mlp(model.dnn, torch.cat(e, dim=-1))
    w, b = model.output.weight[0], model.output.bias[0]
    expected = linear + p_plus @ w[:5] + x_dnn @ w[5:] + b  # Eq. 9
    torch.testing.assert_close(model(batch), expected)
    assert model.hidden_dim == 5 + 6


def test_xdeepfm_without_a_dnn_is_linear_plus_cin():
    batch = synthetic_batch(FIELDS, batch_size=4)
    model = _randomised(XDeepFM(FIELDS, embed_dim=3, cin_hidden_units=(2,), dnn_hidden_units=()))
    e = torch.stack(_embeddings(model, FIELDS, batch), dim=1)
    expected = _first_order(model.first_order, FIELDS, batch) + _cin_by_loops(model.cin, e) @ model.output.weight[0] \
        + model.output.bias[0]
    torch.testing.assert_close(model(batch), expected)
    assert model.dnn is None and model.hidden_dim == 2


def test_xdeepfm_needs_a_cin_layer():
    with pytest.raises(ValueError, match="cin_hidden_units"):
        XDeepFM(FIELDS, cin_hidden_units=())
