"""AutoInt(+), FiGNN, FGCNN, FinalMLP and GDCN: conformance, and each model's defining computation against a
direct computation written here from the paper's formula with the model's own weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ctrbench.models.base import backbone_info
from ctrbench.models.interaction import (
    AttentionalScoring,
    BilinearFusion,
    FeatureGeneration,
    FiGNNLayer,
    GatedCrossNet,
    MultiHeadSelfAttention,
)
from ctrbench.testing import check_ctr_backbone, synthetic_batch, synthetic_fields
from ctrbench_ctr import plugin
from ctrbench_ctr.autoint import AutoInt, AutoIntPlus
from ctrbench_ctr.fgcnn import FGCNN
from ctrbench_ctr.fignn import FiGNN
from ctrbench_ctr.finalmlp import FinalMLP
from ctrbench_ctr.gdcn import GDCN

SMALL_DNN = {"dnn_hidden_units": (16, 8)}
SMALL_FINALMLP = {"mlp1_hidden_units": (16, 8), "mlp2_hidden_units": (12, 6), "fs_hidden_units": (8,)}

# Every registered backbone passes the kit with its defaults in tests/test_conformance.py; here, the configs
# that build a structurally different model.
VARIANTS = [
    pytest.param(AutoInt, {"use_scale": True, "layer_norm": True, "attention_dropout": 0.1, **SMALL_DNN},
                 id="autoint-scaled-layernorm-dnn"),
    pytest.param(FiGNN, {"use_self_attention": False}, id="fignn-fuxictr"),
    pytest.param(FiGNN, {"use_gru": False, "reuse_graph_layer": True, "use_residual": False}, id="fignn-plain"),
    pytest.param(FGCNN, {"share_embedding": True, "conv_batch_norm": False, **SMALL_DNN}, id="fgcnn-shared"),
    pytest.param(FinalMLP, {"fs1_context": ("user_id",), "fs2_context": ("item_id", "genre"), **SMALL_FINALMLP},
                 id="finalmlp-context"),
    pytest.param(FinalMLP, {"use_fs": False, "num_heads": 1, **SMALL_FINALMLP}, id="dualmlp-bilinear"),
    pytest.param(GDCN, {"model_structure": "stacked"}, id="gdcn-s"),
    pytest.param(GDCN, {"model_structure": "crossnet_only"}, id="gcn"),
]


@pytest.mark.parametrize(("factory", "config"), VARIANTS)
def test_interaction_zoo_variant_passes_the_conformance_kit(factory, config):
    check_ctr_backbone(factory, config=config)


def test_the_plugin_registers_every_interaction_model():
    names = {backbone_info(cls).name for cls in plugin.discover()}
    assert {"autoint", "autoint+", "fignn", "fgcnn", "finalmlp", "gdcn"} <= names


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _model(cls, **config):
    torch.manual_seed(0)
    model = cls(synthetic_fields(), embed_dim=4, **config).double().eval()
    with torch.no_grad():
        model.embedding.weight.normal_()  # O(1) embeddings, so every term of the formula matters
    return model, model.embed(synthetic_batch(synthetic_fields(), batch_size=6))


# ---------------------------------------------------------------- AutoInt


@pytest.mark.parametrize("use_scale", [False, True])
def test_autoint_interacting_layer_is_per_head_softmax_attention_plus_relu_residual(use_scale):
    """Eq. 5–8: per head softmax(Q Kᵀ [/√d']) V, heads concatenated, then ReLU(· + W_Res e). Eq. 5 and
    FuxiCTR's default are unscaled; the authors' code scales by 1/√d'."""
    model, E = _model(AutoInt, attention_layers=1, num_heads=2, attention_dim=6, use_scale=use_scale)
    layer = model.attention[0]
    H, dh = 2, 3
    out = []
    for e in E:  # one sample: e [F, d]
        heads = []
        for h in range(H):
            rows = slice(h * dh, (h + 1) * dh)
            Q, K, V = (e @ W.weight[rows].T for W in (layer.W_q, layer.W_k, layer.W_v))
            logits = Q @ K.T / (math.sqrt(dh) if use_scale else 1.0)
            heads.append(torch.softmax(logits, dim=-1) @ V)
        out.append(torch.relu(torch.cat(heads, dim=-1) + e @ layer.W_res.weight.T))
    expected = torch.stack(out)
    torch.testing.assert_close(layer(E), expected)
    torch.testing.assert_close(model.interact(E), expected.flatten(1))  # Eq. 9 reads the flattened output
    assert model.hidden_dim == 5 * 6


def test_autoint_plus_q_is_attention_output_next_to_the_dnn():
    model, E = _model(AutoIntPlus, dnn_hidden_units=(8,))
    torch.testing.assert_close(model.interact(E),
                               torch.cat([model.attention(E).flatten(1), model.dnn(E.flatten(1))], dim=-1))
    assert model.hidden_dim == 5 * 64 + 8
    assert AutoInt(synthetic_fields()).dnn is None  # plain AutoInt has no DNN


def test_attention_rejects_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match="not divisible by num_heads=4"):
        MultiHeadSelfAttention(4, 6, num_heads=4)


# ---------------------------------------------------------------- GDCN


def test_gated_cross_layers_follow_x0_times_wx_plus_b_times_gate_plus_x():
    torch.manual_seed(0)
    net = GatedCrossNet(12, num_layers=3).double()
    x0 = _rand(5, 12)
    x = x0
    for W, Wg, b in zip(net.W, net.Wg, net.b, strict=True):
        x = x0 * (x @ W.weight.T + b) * torch.sigmoid(x @ Wg.weight.T) + x  # c0 ⊙ (W c + b) ⊙ σ(W_g c) + c
    torch.testing.assert_close(net(x0), x)
    assert all(((0 <= b) & (b < 1)).all() for b in net.b)  # b_l ~ U[0, 1), as the authors initialise it


@pytest.mark.parametrize(("structure", "width"), [("parallel", 40 + 7), ("stacked", 7), ("crossnet_only", 40)])
def test_gdcn_q_by_structure(structure, width):
    fields = synthetic_fields()
    model = GDCN(fields, embed_dim=4, num_extra_fields=5, model_structure=structure, dnn_hidden_units=(9, 7))
    assert model.hidden_dim == width  # (5 + 5 extra) fields × 4 = 40
    model, E = _model(GDCN, model_structure=structure, dnn_hidden_units=(9, 7))
    cross = model.crossnet(E.flatten(1))
    expected = {"parallel": lambda: torch.cat([cross, model.dnn(E.flatten(1))], -1),
                "stacked": lambda: model.dnn(cross), "crossnet_only": lambda: cross}[structure]()
    torch.testing.assert_close(model.interact(E), expected)


def test_gdcn_rejects_an_unknown_structure():
    with pytest.raises(ValueError, match="model_structure must be one of"):
        GDCN(synthetic_fields(), model_structure="GDCN-P")


# ---------------------------------------------------------------- FinalMLP


def _relu_mlp(x, mlp):
    for layer in mlp.net:
        x = x @ layer.weight.T + layer.bias if isinstance(layer, nn.Linear) else torch.relu(x)
    return x


def test_finalmlp_feature_selection_is_two_sigmoid_of_the_context_mlp_times_the_embeddings():
    model, E = _model(FinalMLP, fs1_context=("user_id",), **SMALL_FINALMLP)
    e = E.flatten(1)
    g1 = 2 * torch.sigmoid(_relu_mlp(E[:, 0], model.gates[0].mlp) @ model.gates[0].out.weight.T
                           + model.gates[0].out.bias)  # conditioned on the user_id embedding
    ctx2 = model.context_vectors[0]  # no context fields: the learned vector, one gate for every sample
    g2 = 2 * torch.sigmoid(_relu_mlp(ctx2, model.gates[1].mlp) @ model.gates[1].out.weight.T
                           + model.gates[1].out.bias)
    assert g1.shape == e.shape and g2.shape == (1, e.shape[1])
    torch.testing.assert_close(model.interact(E), torch.cat([model.mlp1(g1 * e), model.mlp2(g2 * e)], dim=-1))


def test_multi_head_bilinear_fusion_equals_the_per_head_sum():
    torch.manual_seed(0)
    k, D1, D2 = 3, 6, 9
    fusion = BilinearFusion(D1, D2, num_heads=k).double()
    with torch.no_grad():
        fusion.w_x.bias.fill_(0.4)
    o1, o2 = _rand(5, D1, seed=1), _rand(5, D2, seed=2)
    expected = []
    for x, y in zip(o1, o2, strict=True):
        total = fusion.w_x.bias[0] + fusion.w_x.weight[0] @ x + fusion.w_y.weight[0] @ y
        for j in range(k):  # Σ_j o_1jᵀ W_3j o_2j, head j = the j-th slice of each stream
            total = total + x[j * 2:(j + 1) * 2] @ fusion.W[j] @ y[j * 3:(j + 1) * 3]
        expected.append(total)
    torch.testing.assert_close(fusion(o1, o2), torch.stack(expected))


def test_finalmlp_logit_is_the_fusion_of_its_two_streams():
    model, E = _model(FinalMLP, **SMALL_FINALMLP)
    q = model.interact(E)
    assert model.hidden_dim == q.shape[1] == 8 + 6
    torch.testing.assert_close(model.head(q), model.fusion(q[:, :8], q[:, 8:]))
    batch = synthetic_batch(synthetic_fields(), batch_size=6)
    torch.testing.assert_close(model(batch), model.fusion(q[:, :8], q[:, 8:]))


def test_finalmlp_rejects_an_unknown_context_field_and_indivisible_heads():
    with pytest.raises(ValueError, match="unknown context field 'user'.*did you mean 'user_id'"):
        FinalMLP(synthetic_fields(), fs1_context=("user",))
    with pytest.raises(ValueError, match="divisible by num_heads=4"):
        FinalMLP(synthetic_fields(), mlp1_hidden_units=(6,), num_heads=4)


# ---------------------------------------------------------------- FiGNN


def _gru(x, h, cell):
    """GRUCell by its formula: r, z gates, candidate n, h' = (1 − z) n + z h."""
    Wr, Wz, Wn = cell.weight_ih.chunk(3)
    Ur, Uz, Un = cell.weight_hh.chunk(3)
    br, bz, bn = cell.bias_ih.chunk(3)
    cr, cz, cn = cell.bias_hh.chunk(3)
    r = torch.sigmoid(Wr @ x + br + Ur @ h + cr)
    z = torch.sigmoid(Wz @ x + bz + Uz @ h + cz)
    n = torch.tanh(Wn @ x + bn + r * (Un @ h + cn))
    return (1 - z) * n + z * h


@pytest.mark.parametrize("use_gru", [True, False])
def test_fignn_one_step_equals_the_node_loop(use_gru):
    torch.manual_seed(0)
    F, d = 4, 3
    gnn = FiGNNLayer(F, d, num_layers=1, use_gru=use_gru).double()
    with torch.no_grad():
        gnn.b_p.normal_()
    H1 = _rand(2, F, d)
    w = gnn.W_attn.weight[0]
    out = torch.empty_like(H1)
    for b in range(H1.shape[0]):
        h = H1[b]
        for i in range(F):
            others = [j for j in range(F) if j != i]  # no self-loop
            logits = torch.stack([nn.functional.leaky_relu(w @ torch.cat([h[i], h[j]]), 0.01) for j in others])
            A = torch.softmax(logits, dim=0)  # edge weights into node i
            a = gnn.W_in[0, i] @ sum(A[n] * (gnn.W_out[0, j] @ h[j]) for n, j in enumerate(others)) + gnn.b_p[0]
            new = _gru(a, h[i], gnn.gru) if use_gru else h[i] + a  # state update
            out[b, i] = new + H1[b, i]  # residual to h^1
    torch.testing.assert_close(gnn(H1), out)
    A = gnn.edge_weights(H1)
    torch.testing.assert_close(A.sum(-1), torch.ones(2, F, dtype=torch.float64))
    assert (A.diagonal(dim1=1, dim2=2) == 0).all()


def test_fignn_attentional_scoring_is_sum_of_sigmoid_weight_times_score():
    torch.manual_seed(0)
    scoring = AttentionalScoring(3).double()
    H = _rand(4, 5, 3)
    a = torch.sigmoid(H @ scoring.weight.weight[0])  # a_i = MLP_2(h_i)
    y = H @ scoring.score.weight[0]  # ŷ_i = MLP_1(h_i)
    torch.testing.assert_close(scoring(H), (a * y).sum(-1))


def test_fignn_head_scores_the_gnn_output_of_the_attention_layer():
    model, E = _model(FiGNN, attention_dim=8, num_heads=2)
    H = model.gnn(model.attention(E))
    torch.testing.assert_close(model.interact(E), H.flatten(1))
    torch.testing.assert_close(model(synthetic_batch(synthetic_fields(), batch_size=6)), model.scoring(H))
    assert model.hidden_dim == 5 * 8 and FiGNN(synthetic_fields(), use_self_attention=False).hidden_dim == 5 * 16


# ---------------------------------------------------------------- FGCNN


def test_feature_generation_heights_and_recombination_count():
    gen = FeatureGeneration(5, 4, channels=(3, 4, 5), kernel_heights=(3, 3, 3), pooling_sizes=(2, 2, 2),
                            recombined_channels=(2, 3, 1), batch_norm=False)
    assert gen.heights == [3, 2, 1]  # ⌈5/2⌉, ⌈3/2⌉, ⌈2/2⌉
    assert gen.num_new_features == 3 * 2 + 2 * 3 + 1 * 1
    assert gen(_rand(7, 5, 4).float()).shape == (7, 13, 4)
    gen = FeatureGeneration(7, 4, channels=(3, 4), kernel_heights=(2, 5), pooling_sizes=(3, 2),
                            recombined_channels=(1, 2), batch_norm=False)
    assert gen.heights == [2, 1]  # even kernel: 7 − 1 = 6 rows → ⌈6/3⌉ = 2; then ⌈2/2⌉
    assert gen(_rand(7, 7, 4).float()).shape == (7, 2 * 1 + 1 * 2, 4)
    with pytest.raises(ValueError, match="leaves no rows"):
        FeatureGeneration(5, 4, channels=(3, 3), kernel_heights=(3, 2), pooling_sizes=(5, 2),
                          recombined_channels=(1, 1))


def test_feature_generation_first_layer_by_hand():
    torch.manual_seed(0)
    gen = FeatureGeneration(5, 2, channels=(2,), kernel_heights=(3,), pooling_sizes=(2,),
                            recombined_channels=(1,), batch_norm=False).double()
    E = _rand(3, 5, 2)
    conv, lin = gen.convs[0][0], gen.recombine[0][0]
    out = []
    for e in E:
        padded = torch.cat([torch.zeros(1, 2, dtype=e.dtype), e, torch.zeros(1, 2, dtype=e.dtype)])  # 'same'
        C = torch.stack([torch.stack([conv.bias[c] + (conv.weight[c, 0, :, 0] @ padded[i:i + 3]) for i in range(5)])
                         for c in range(2)]).tanh()  # [channels, F, d]
        S = torch.stack([C[:, 0:2].amax(1), C[:, 2:4].amax(1), C[:, 4:5].amax(1)], dim=1)  # max-pool 2, ceil
        out.append(torch.tanh(lin.weight @ S.flatten() + lin.bias).view(3, 2))  # recombination: 3·1 features
    torch.testing.assert_close(gen(E), torch.stack(out))


def test_fgcnn_classifies_raw_and_generated_features_with_inner_products():
    model, E = _model(FGCNN, channels=(3, 4), kernel_heights=(3, 3), pooling_sizes=(2, 2),
                      recombined_channels=(2, 2), dnn_hidden_units=(8,))
    assert E.shape[1] == 10 and model.num_inputs == 10  # [E; E_fg]: the generator has its own table
    torch.testing.assert_close(E[:, 5:], model.fg_embedding(synthetic_batch(synthetic_fields(), 6).x))
    new = model.generator(E[:, 5:])
    assert new.shape[1] == 3 * 2 + 2 * 2
    X = torch.cat([E[:, :5], new], dim=1)  # 15 features
    pairs = torch.stack([(X[:, i] * X[:, j]).sum(-1) for i in range(15) for j in range(i + 1, 15)], dim=-1)
    torch.testing.assert_close(model.interact(E), model.dnn(torch.cat([X.flatten(1), pairs], dim=-1)))


def test_fgcnn_rejects_mismatched_generator_lists():
    with pytest.raises(ValueError, match="must have the same length"):
        FGCNN(synthetic_fields(), channels=(3, 4), kernel_heights=(3,), pooling_sizes=(2, 2),
              recombined_channels=(2, 2))
