"""Built-in CTR backbones (plugins/ctrbench_ctr), their shared layers, and the conformance kit itself."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pluggy
import pytest
import torch
from torch import nn

from ctrbench import hookspecs
from ctrbench.data.types import CTRData, Field
from ctrbench.errors import PluginError
from ctrbench.models.base import CTRBackbone
from ctrbench.models.layers import MLP, CrossNetMix, CrossNetV1, CrossNetV2, fm_pairwise
from ctrbench.registry import Registry
from ctrbench.testing import check_ctr_backbone, check_dataset, synthetic_batch, synthetic_fields
from ctrbench_ctr import plugin
from ctrbench_ctr.dcnv2 import DCNv2
from ctrbench_ctr.dnn import DNN
from ctrbench_ctr.fm import FM
from ctrbench_ctr.lr import LR

# ---------------------------------------------------------------- structural variants pass the kit too
# Every registered backbone passes the kit with its defaults in tests/test_conformance.py; here, the configs
# that build a structurally different model.

VARIANTS = [
    pytest.param(DNN, {"hidden_units": (16, 8), "dropout": 0.2, "batch_norm": True}, id="dnn-bn-dropout"),
    pytest.param(DCNv2, {"use_low_rank_mixture": True}, id="dcnv2-mix"),
    pytest.param(DCNv2, {"model_structure": "stacked"}, id="dcnv2-stacked"),
    pytest.param(DCNv2, {"model_structure": "crossnet_only"}, id="dcnv2-crossnet-only"),
]


@pytest.mark.parametrize(("factory", "config"), VARIANTS)
def test_backbone_variant_passes_the_conformance_kit(factory, config):
    check_ctr_backbone(factory, config=config)


def test_plugin_registers_every_decorated_backbone_through_pluggy():
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name="builtin-ctr")
    pm.check_pending()
    registry: Registry[CTRBackbone] = Registry("ctr")
    pm.hook.ctrbench_register_ctr_backbones(register=lambda name, factory, **meta: registry.add(
        name, factory, plugin="builtin-ctr", **meta))
    assert {"dcnv2", "dnn", "fm", "lr"} <= set(registry)
    assert len(registry) == len(plugin.discover())  # every decorated class, nothing else
    for name in registry:
        entry = registry.get(name)
        assert entry.paper and entry.summary and entry.metadata.get("q"), name
        assert "defaults" not in entry.metadata, name
    assert "dcnv2" in [e.name for e in registry.find("*dcn*")]
    assert all("dcn" in e.name for e in registry.find("*dcn*"))


def test_a_mistyped_config_key_is_an_error_with_a_suggestion():
    registry: Registry[CTRBackbone] = Registry("ctr")
    registry.add("dnn", DNN, plugin="builtin-ctr")
    with pytest.raises(PluginError, match="did you mean 'hidden_units'"):
        registry.get("dnn").create(fields=synthetic_fields(), embed_dim=4, hiden_units=(8,))


# ---------------------------------------------------------------- reference computations


def _E(B=6, F=5, d=4, seed=0):
    return torch.randn(B, F, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_fm_pairwise_equals_the_explicit_double_sum():
    E = _E()
    explicit = sum(E[:, i] * E[:, j] for i, j in itertools.combinations(range(E.shape[1]), 2))
    torch.testing.assert_close(fm_pairwise(E), explicit)


def test_fm_logit_is_bias_plus_first_order_plus_pairwise_inner_products():
    fields = synthetic_fields()
    batch = synthetic_batch(fields, batch_size=7)
    torch.manual_seed(0)
    model = FM(fields, embed_dim=4).double()
    with torch.no_grad():
        model.bias.fill_(0.3)
        model.embedding.weight.normal_()
        model.first_order.weight.normal_()
    e = [model.embedding.lookup(f.name, batch.x[:, j]) for j, f in enumerate(fields)]
    w = [model.first_order.lookup(f.name, batch.x[:, j]).squeeze(-1) for j, f in enumerate(fields)]
    pairs = sum((e[i] * e[j]).sum(-1) for i, j in itertools.combinations(range(len(fields)), 2))
    torch.testing.assert_close(model(batch), 0.3 + sum(w) + pairs)
    assert model.hidden_dim == 4
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == sum(f.vocab_size for f in fields) * (4 + 1) + 1  # V, w and w_0, nothing else


def test_lr_logit_is_bias_plus_the_looked_up_weights():
    fields = synthetic_fields()
    batch = synthetic_batch(fields, batch_size=7)
    model = LR(fields, embed_dim=16)
    with torch.no_grad():
        model.bias.fill_(-0.7)
        model.embedding.weight.normal_()
    expected = -0.7 + sum(model.embedding.table(f.name)[batch.x[:, j], 0] for j, f in enumerate(fields))
    torch.testing.assert_close(model(batch), expected)
    assert model.embed_dim == 1 and model.hidden_dim == len(fields)
    assert sum(p.numel() for p in model.parameters()) == sum(f.vocab_size for f in fields) + 1


def test_crossnet_v1_layers_follow_x0_times_xl_dot_w_plus_b_plus_xl():
    torch.manual_seed(0)
    net = CrossNetV1(12, num_layers=3).double()
    with torch.no_grad():
        for b in net.b:
            b.normal_()
    x0 = _E(B=5, F=3, d=4).flatten(1)
    x = x0
    for w, b in zip(net.w, net.b, strict=True):
        x = x0 * (x @ w.weight[0]).unsqueeze(-1) + b + x
    torch.testing.assert_close(net(x0), x)


def test_crossnet_v2_layers_follow_x0_hadamard_wx_plus_b_plus_xl():
    torch.manual_seed(0)
    net = CrossNetV2(12, num_layers=3).double()
    with torch.no_grad():
        for layer in net.layers:
            layer.bias.normal_()
    x0 = _E(B=5, F=3, d=4).flatten(1)
    x = x0
    for layer in net.layers:
        x = x0 * (x @ layer.weight.T + layer.bias) + x
    torch.testing.assert_close(net(x0), x)


def test_crossnet_mix_equals_a_per_expert_loop():
    torch.manual_seed(0)
    D, r, K, L = 12, 3, 4, 2
    net = CrossNetMix(D, num_layers=L, low_rank=r, num_experts=K).double()
    with torch.no_grad():
        net.b.normal_()
    x0 = _E(B=5, F=3, d=4).flatten(1)
    out = []
    for x0_s in x0:  # one sample at a time, column vectors as in the paper
        x0_c = x0_s.unsqueeze(1)  # [D, 1]
        x = x0_c
        for l in range(L):
            gates = torch.softmax(torch.stack([net.gating.weight[i] @ x[:, 0] for i in range(K)]), dim=0)
            mix = torch.zeros_like(x)
            for i in range(K):
                U, V, C = net.U[l, i], net.V[l, i], net.C[l, i]
                expert = x0_c * (U @ torch.tanh(C @ torch.tanh(V.T @ x)) + net.b[l].unsqueeze(1))
                mix = mix + gates[i] * expert
            x = mix + x
        out.append(x[:, 0])
    torch.testing.assert_close(net(x0), torch.stack(out))


def test_mlp_widths_and_identity_when_empty():
    mlp = MLP(10, (8, 6), batch_norm=True, dropout=0.1, activation="tanh")
    assert mlp.output_dim == 6 and mlp(torch.randn(3, 10)).shape == (3, 6)
    identity = MLP(10, ())
    x = torch.randn(3, 10)
    assert identity.output_dim == 10 and torch.equal(identity(x), x)
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        MLP(10, (4,), activation="relu6")


@pytest.mark.parametrize(("structure", "width"), [("parallel", 40 + 7), ("stacked", 7), ("crossnet_only", 40)])
def test_dcnv2_hidden_dim_by_structure(structure, width):
    fields = synthetic_fields()  # 5 fields
    model = DCNv2(fields, embed_dim=4, num_extra_fields=5, model_structure=structure, dnn_hidden_units=(9, 7))
    assert model.hidden_dim == width  # (5 + 5 extra) fields × 4 = 40


def test_dcnv2_parallel_q_is_cross_output_next_to_dnn_output():
    fields = synthetic_fields()
    model = DCNv2(fields, embed_dim=4, dnn_hidden_units=(8,)).eval()
    E = model.embed(synthetic_batch(fields))
    x0 = E.flatten(1)
    torch.testing.assert_close(model.interact(E), torch.cat([model.crossnet(x0), model.dnn(x0)], dim=-1))


def test_dcnv2_rejects_an_unknown_structure():
    with pytest.raises(ValueError, match="model_structure must be one of"):
        DCNv2(synthetic_fields(), model_structure="stacked_parallel")


# ---------------------------------------------------------------- the kit must fail on broken backbones


class _Tiny(CTRBackbone):
    def __init__(self, fields, *, embed_dim: int = 16, num_extra_fields: int = 0) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.proj = nn.Linear(self.num_inputs * embed_dim, 4)
        self.build_head(4)

    def interact(self, E):
        return torch.tanh(self.proj(E.flatten(1)))


class _UnusedParameter(_Tiny):
    def __init__(self, fields, *, embed_dim: int = 16, num_extra_fields: int = 0) -> None:
        super().__init__(fields, embed_dim=embed_dim, num_extra_fields=num_extra_fields)
        self.gate = nn.Parameter(torch.ones(4))  # interact never reads it


class _IgnoresExtra(_Tiny):
    def __init__(self, fields, *, embed_dim: int = 16, num_extra_fields: int = 0) -> None:
        super().__init__(fields, embed_dim=embed_dim, num_extra_fields=0)

    def interact(self, E):
        return super().interact(E[:, :len(self.fields)])


class _WrongHiddenDim(_Tiny):
    def __init__(self, fields, *, embed_dim: int = 16, num_extra_fields: int = 0) -> None:
        super().__init__(fields, embed_dim=embed_dim, num_extra_fields=num_extra_fields)
        self.hidden_dim = 5


class _StateOutsideStateDict(_Tiny):
    def __init__(self, fields, *, embed_dim: int = 16, num_extra_fields: int = 0) -> None:
        super().__init__(fields, embed_dim=embed_dim, num_extra_fields=num_extra_fields)
        self.scale = torch.randn(4)  # a plain attribute: not saved

    def interact(self, E):
        return super().interact(E) * self.scale


class _NoisyInEval(_Tiny):
    def interact(self, E):
        return super().interact(E) + torch.rand(E.shape[0], 4)


class _EmbedBypassesTables(_Tiny):
    def embed(self, batch):
        return 2 * super().embed(batch)


def test_the_kit_passes_a_correct_minimal_backbone():
    check_ctr_backbone(_Tiny)


@pytest.mark.parametrize(("factory", "check"), [
    (_UnusedParameter, r"\[gradients\].*gate"),
    (_IgnoresExtra, r"\[extra fields\]"),  # the base class now rejects it before the kit compares outputs
    (_WrongHiddenDim, r"\[shapes\].*hidden_dim"),
    (_StateOutsideStateDict, r"\[save/load\]"),
    (_NoisyInEval, r"\[determinism\]"),
    (_EmbedBypassesTables, r"\[tables\].*item_id|\[tables\].*user_id"),
    (lambda fields, **kw: DCNv2(fields, model_structure="bogus", **kw), r"\[interface\] raised ValueError"),
])
def test_the_kit_fails_a_broken_backbone(factory, check):
    with pytest.raises(AssertionError, match=check):
        check_ctr_backbone(factory)


def test_the_kit_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_ctr_backbone(FM)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- check_dataset


def _dataset(**overrides) -> CTRData:
    rng = np.random.default_rng(0)
    n = 50
    fields = [Field("user_id", "categorical", 6), Field("item_id", "categorical", 5)]
    base = dict(
        name="tiny", fields=fields,
        X=np.stack([rng.integers(0, 6, n), rng.integers(0, 5, n)], axis=1).astype(np.int64),
        y=rng.integers(0, 2, n).astype(np.float32), ts=np.arange(n), user=np.zeros(n, np.int64),
        item=np.zeros(n, np.int64),
        splits={"train": np.arange(0, 30), "valid": np.arange(30, 40), "test": np.arange(40, 50)},
        vocab={"item_id": ["<unk>", "a", "b", "c", "d"]},
        sequences={"history": rng.integers(0, 5, (n, 4)).astype(np.int64)},
        sequence_fields=[Field("history", "sequence", 5)],
    )
    base.update(overrides)
    return CTRData(**base)


def test_check_dataset_accepts_a_valid_dataset():
    check_dataset(_dataset())


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.X.__setitem__((3, 1), 5), r"X column 'item_id'.*outside \[0, 5\)"),
    (lambda d: setattr(d, "X", d.X.astype(np.int32)), "X has dtype int32"),
    (lambda d: d.y.__setitem__(0, 2.0), "y must be 0 or 1"),
    (lambda d: d.splits.__setitem__("valid", np.arange(25, 40)), "splits 'train' and 'valid' share 5 rows"),
    (lambda d: d.splits.__setitem__("test", np.arange(0)), "split 'test' is empty"),
    (lambda d: d.splits.__setitem__("test", np.arange(40, 51)), "split 'test' must be strictly increasing"),
    (lambda d: d.vocab.__setitem__("item_id", ["a"]), r"vocab\['item_id'\] has 1 entries"),
    (lambda d: d.sequences["history"].__setitem__((0, 0), 9), r"sequences\['history'\] has values"),
    (lambda d: d.sequences.__setitem__("history", np.zeros((50,), np.int64)), r"expected \(50, L\)"),
    (lambda d: setattr(d, "item_text", {"blurb": ["", "x"]}), r"item_text 'blurb' has 2 entries.*'item_id' \(5\)"),
    (lambda d: setattr(d, "item_text", {"blurb": ["?", "a", "b", "c", "d"]}), "item_text 'blurb' must be strings"),
    (lambda d: setattr(d, "item_text", {"history": [""] * 5}), "item_text 'history' shares its name"),
])
def test_check_dataset_rejects_a_broken_invariant(mutate, message):
    data = _dataset()
    mutate(data)
    with pytest.raises(AssertionError, match=message):
        check_dataset(data)


def test_check_dataset_accepts_a_memory_mapped_x(tmp_path):
    data = _dataset()
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.int64, shape=data.X.shape)
    mm[:] = data.X
    check_dataset(dataclasses.replace(data, X=mm))


def test_field_embedding_gather_equals_nn_embedding_in_values_and_gradients():
    """The CPU gather (index_select, for its faster backward) is the same lookup as nn.functional.embedding:
    identical rows forward, and the same summed gradients per row (repeated indices included) backward."""
    from ctrbench.models.base import FieldEmbedding

    torch.manual_seed(0)
    fields = [Field("a", "categorical", 7), Field("b", "categorical", 3), Field("c", "categorical", 11)]
    emb = FieldEmbedding(fields, 4, init_std=1.0)
    x = torch.tensor([[1, 2, 3], [1, 0, 10], [6, 2, 3], [1, 2, 3]])  # repeated rows: gradients must add up
    upstream = torch.randn(4, 3, 4)
    got = emb(x)
    (got * upstream).sum().backward()
    ref_weight = emb.weight.detach().clone().requires_grad_(True)
    offsets = torch.tensor([0, 7, 10])
    ref = torch.nn.functional.embedding(x + offsets, ref_weight)
    (ref * upstream).sum().backward()
    assert torch.equal(got, ref)
    assert torch.allclose(emb.weight.grad, ref_weight.grad, atol=1e-6)
    assert emb.weight.grad[1].abs().sum() > 0 and emb.weight.grad[5].abs().sum() == 0  # row 5 was never looked up
