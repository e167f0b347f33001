"""DIN and DIEN (plugins/ctrbench_ctr/din.py, dien.py) and their layers (ctrbench/models/sequence.py)."""

from __future__ import annotations

import pytest
import torch

from ctrbench.models.base import Batch, CTRBackbone
from ctrbench.models.sequence import (
    ActivationUnit,
    AUGRUCell,
    Dice,
    InterestEvolution,
    chronological,
    din_pooling,
)
from ctrbench.testing import check_ctr_backbone, synthetic_batch, synthetic_fields
from ctrbench_ctr import plugin
from ctrbench_ctr.dien import DIEN
from ctrbench_ctr.din import DIN
from ctrbench_ctr.dnn import DNN

ITEM = 1  # column of item_id in synthetic_fields()

# ---------------------------------------------------------------- conformance


# DIN and DIEN with their defaults: tests/test_conformance.py; here, structurally different configs, and a model
# that ignores sequences passing the kit's history mode unchanged.
@pytest.mark.parametrize(("factory", "config"), [
    pytest.param(DIN, {"attention_softmax": True}, id="din-softmax"),
    pytest.param(DIN, {"attention_activation": "prelu", "attention_hidden_units": (8, 4)}, id="din-prelu"),
    pytest.param(DIN, {"attention_activation": "sigmoid", "hidden_units": (16,), "batch_norm": True,
                       "dropout": 0.1}, id="din-sigmoid-bn"),
    pytest.param(DIEN, {"hidden_units": (16, 8), "batch_norm": True}, id="dien-bn"),
    pytest.param(DNN, {}, id="dnn-ignores-history"),
])
def test_sequence_backbone_passes_the_conformance_kit(factory, config):
    check_ctr_backbone(factory, config=config, with_history=True)


def test_din_and_dien_are_discovered_with_their_metadata():
    found = {cls.__ctrbench_backbone__.name: cls for cls in plugin.discover()}
    assert found["din"] is DIN and found["dien"] is DIEN
    for name in ("din", "dien"):
        info = found[name].__ctrbench_backbone__
        assert info.paper.startswith("Zhou et al.") and "MLP" in info.q


class _PoolsNothing(CTRBackbone):
    """Declares a pooled input but appends zeros: the kit's history check must catch it."""

    def __init__(self, fields, *, embed_dim: int = 16, num_extra_fields: int = 0) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.proj = torch.nn.Linear(self.num_inputs * embed_dim, 4)
        self.build_head(4)

    @property
    def num_inputs(self) -> int:
        return len(self.fields) + 1 + self.num_extra_fields

    def embed(self, batch):
        E = super().embed(batch)
        return torch.cat([E, torch.zeros_like(E[:, :1])], dim=1)

    def interact(self, E):
        return torch.tanh(self.proj(E.flatten(1)))


def test_the_kit_fails_a_sequence_model_that_ignores_the_history():
    with pytest.raises(AssertionError, match=r"\[history\] the output does not change"):
        check_ctr_backbone(_PoolsNothing, with_history=True)


def test_the_kit_checks_the_pooled_width_of_embed():
    class TooWide(_PoolsNothing):
        @property
        def num_inputs(self) -> int:
            return len(self.fields) + 2 + self.num_extra_fields

    with pytest.raises(AssertionError, match=r"\[shapes\] embed\(batch\) has shape .*F \+ 2 pooled"):
        check_ctr_backbone(TooWide, with_history=True)


@pytest.mark.parametrize("factory", [DIN, DIEN])
def test_building_without_a_history_field_is_a_clear_error(factory):
    with pytest.raises(ValueError, match=r"needs the sequence field 'history'.*history_length > 0"):
        factory(synthetic_fields(), embed_dim=4)
    with pytest.raises(ValueError, match=r"needs the sequence field 'clicks'"):
        factory(synthetic_fields(with_history=True), embed_dim=4, history_field="clicks")


@pytest.mark.parametrize("factory", [DIN, DIEN])
def test_a_history_that_shares_no_table_is_an_error(factory):
    fields = synthetic_fields(with_history=True)
    fields[-1] = type(fields[-1])("history", "sequence", 17)  # no `shares`
    with pytest.raises(ValueError, match="must share a categorical field's embedding table"):
        factory(fields, embed_dim=4)
    fields[-1] = type(fields[-1])("history", "sequence", 99, shares="item_id")
    with pytest.raises(ValueError, match="vocab_size 99, larger than the table of 'item_id'"):
        factory(fields, embed_dim=4)


@pytest.mark.parametrize("factory", [DIN, DIEN])
def test_a_batch_without_the_history_is_a_clear_error(factory):
    fields = synthetic_fields(with_history=True)
    model = factory(fields, embed_dim=4)
    batch = synthetic_batch(fields)
    with pytest.raises(ValueError, match=r"the batch has no sequences\['history'\]"):
        model(Batch(batch.x, batch.y, batch.idx))


# ---------------------------------------------------------------- DIN


def _batch_with_known_targets(fields, seed=0):
    """A synthetic batch whose target items are never 0, so item row 0 is used by padding only."""
    batch = synthetic_batch(fields, seed=seed)
    batch.x[:, ITEM] = batch.x[:, ITEM].clamp(min=1)
    return batch


def _model(factory, fields):
    """A small model with unit-scale embeddings (the default 1e-4 would hide changes below float precision)."""
    torch.manual_seed(0)
    model = factory(fields, embed_dim=8, hidden_units=(16,))
    with torch.no_grad():
        model.embedding.weight.normal_()
    return model


def _perturb_row(model, field, row, value=7.0):
    with torch.no_grad():
        model.embedding.table(field)[row] += value


@pytest.mark.parametrize("factory", [DIN, DIEN])
@pytest.mark.parametrize("train", [False, True])
def test_embedding_rows_seen_only_at_padded_positions_do_not_change_the_output(factory, train):
    fields = synthetic_fields(with_history=True)
    batch = _batch_with_known_targets(fields)
    assert (batch.sequences["history"] == 0).any() and (batch.x[:, ITEM] != 0).all()
    model = _model(factory, fields).train(train)
    with torch.no_grad():
        before = model(batch)
        _perturb_row(model, "item_id", 0)  # item 0 = padding: the only place it appears here
        after = model(batch)
    assert torch.equal(before, after)


@pytest.mark.parametrize("factory", [DIN, DIEN])
def test_changing_a_valid_history_item_changes_the_output(factory):
    fields = synthetic_fields(with_history=True)
    batch = _batch_with_known_targets(fields)
    model = _model(factory, fields).eval()
    hist = batch.sequences["history"]
    assert hist[0].ne(0).all()  # row 0 is full
    other = hist.clone()
    other[0, 2] = 1 + other[0, 2] % 16  # another valid item
    with torch.no_grad():
        a = model(batch)
        b = model(Batch(batch.x, batch.y, batch.idx, {"history": other}))
    assert not torch.equal(a[0], b[0])
    assert torch.equal(a[1:], b[1:])  # other rows untouched


def test_din_pooling_ignores_anything_at_padded_positions():
    g = torch.Generator().manual_seed(0)
    B, L, d = 5, 7, 4
    H, v = torch.randn(B, L, d, generator=g), torch.randn(B, d, generator=g)
    mask = torch.arange(L) < torch.tensor([7, 3, 0, 1, 5]).unsqueeze(1)
    torch.manual_seed(0)
    unit = ActivationUnit(d, (6,), "dice").eval()
    for softmax in (False, True):
        pooled, weights = din_pooling(unit, H, v, mask, softmax=softmax)
        garbage = H.masked_fill(~mask.unsqueeze(-1), float("nan")).masked_fill(~mask.unsqueeze(-1) & (H > 0), 1e30)
        pooled2, weights2 = din_pooling(unit, garbage, v, mask, softmax=softmax)
        assert torch.equal(pooled, pooled2) and torch.equal(weights, weights2)
        assert torch.equal(weights[~mask], torch.zeros(int((~mask).sum())))
        assert torch.equal(pooled[2], torch.zeros(d))  # empty history pools to 0
    torch.testing.assert_close(weights.sum(-1)[mask.any(-1)], torch.ones(4))  # softmax: sums to 1 where valid


def test_din_dice_batch_statistics_come_from_valid_positions_only():
    g = torch.Generator().manual_seed(1)
    B, L, d = 4, 6, 3
    H, v = torch.randn(B, L, d, generator=g), torch.randn(B, d, generator=g)
    mask = torch.arange(L) < torch.tensor([6, 2, 0, 4]).unsqueeze(1)
    torch.manual_seed(0)
    unit = ActivationUnit(d, (5,), "dice").train()
    pooled, _ = din_pooling(unit, H, v, mask)
    # the same valid positions with a longer padding tail give the same training-mode result
    longer = torch.cat([H, torch.randn(B, 3, d, generator=g)], dim=1)
    pooled2, _ = din_pooling(unit, longer, v, torch.cat([mask, torch.zeros(B, 3, dtype=torch.bool)], dim=1))
    torch.testing.assert_close(pooled, pooled2, rtol=0, atol=0)


def _dice_by_hand(dice: Dice, s: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid((s - dice.running_mean) / torch.sqrt(dice.running_var + dice.eps))
    return p * s + (1 - p) * dice.alpha * s


def test_din_pooled_vector_is_the_sum_of_activation_weighted_history_embeddings():
    fields = synthetic_fields(with_history=True)
    batch = _batch_with_known_targets(fields, seed=3)
    torch.manual_seed(0)
    model = DIN(fields, embed_dim=4, attention_hidden_units=(6,), hidden_units=(8,)).double().eval()
    lin1, dice, lin2 = model.attention.net
    with torch.no_grad():
        model.embedding.weight.normal_()
        dice.alpha.uniform_(-1, 1)
        dice.running_mean.normal_()
        dice.running_var.uniform_(0.5, 2.0)
    items = model.embedding.table("item_id")
    expected = []
    for b in range(len(batch)):
        v = items[batch.x[b, ITEM]]  # v_A
        total = torch.zeros(4, dtype=torch.float64)
        for j in batch.sequences["history"][b].tolist():
            if j == 0:
                continue
            e = items[j]
            x = torch.cat([e, v, e - v, e * v])
            a = lin2.weight[0] @ _dice_by_hand(dice, lin1.weight @ x + lin1.bias) + lin2.bias[0]  # a(e_j, v_A)
            total = total + a * e
        expected.append(total)
    with torch.no_grad():
        E = model.embed(batch)
    assert E.shape == (len(batch), 6, 4)
    torch.testing.assert_close(E[:, -1], torch.stack(expected))
    torch.testing.assert_close(E[:, :5], model.embedding(batch.x))


def test_dice_uses_batch_statistics_in_training_and_running_ones_in_eval():
    torch.manual_seed(0)
    dice = Dice(3)
    with torch.no_grad():
        dice.alpha.copy_(torch.tensor([0.5, -1.0, 2.0]))
    s = torch.randn(10, 3, dtype=torch.float32)
    out = dice.train()(s)
    p = torch.sigmoid((s - s.mean(0)) / torch.sqrt(s.var(0, unbiased=False) + 1e-8))
    torch.testing.assert_close(out, p * s + (1 - p) * dice.alpha * s)
    torch.testing.assert_close(dice.running_mean, 0.01 * s.mean(0))
    torch.testing.assert_close(dice.eval()(s), _dice_by_hand(dice, s))
    assert torch.isfinite(dice.train()(s[:1])).all()  # one row: running statistics, no NaN


# ---------------------------------------------------------------- DIEN


def test_augru_step_follows_its_equations():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cell = AUGRUCell(5, 3).double()
    i = torch.randn(4, 5, generator=g, dtype=torch.float64)
    h = torch.randn(4, 3, generator=g, dtype=torch.float64)
    a = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=torch.float64)
    W, b, U = cell.x2h.weight, cell.x2h.bias, cell.h2h.weight
    Wu, Wr, Wh = W[0:3], W[3:6], W[6:9]
    bu, br, bh = b[0:3], b[3:6], b[6:9]
    Uu, Ur, Uh = U[0:3], U[3:6], U[6:9]
    out = []
    for k in range(4):
        u = torch.sigmoid(Wu @ i[k] + Uu @ h[k] + bu)
        r = torch.sigmoid(Wr @ i[k] + Ur @ h[k] + br)
        cand = torch.tanh(Wh @ i[k] + r * (Uh @ h[k]) + bh)
        u_att = a[k] * u
        out.append((1 - u_att) * h[k] + u_att * cand)
    got = cell(i, h, a)
    torch.testing.assert_close(got, torch.stack(out))
    assert torch.equal(got[0], h[0])  # a_t = 0: the state does not move


def test_chronological_reverses_each_valid_prefix():
    H = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0], [0, 0, 0, 0], [6, 7, 8, 9]]).float().unsqueeze(-1)
    chrono, valid = chronological(H, H.squeeze(-1) != 0)
    assert chrono.squeeze(-1).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0], [0, 0, 0, 0], [9, 8, 7, 6]]
    assert valid.tolist() == (H.squeeze(-1) != 0).tolist()


def test_dien_final_state_equals_a_per_user_run_over_the_valid_history_oldest_first():
    g = torch.Generator().manual_seed(2)
    B, L, d = 5, 6, 4
    lengths = torch.tensor([6, 3, 0, 1, 4])
    mask = torch.arange(L) < lengths.unsqueeze(1)
    H = torch.randn(B, L, d, generator=g, dtype=torch.float64)
    v = torch.randn(B, d, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    layer = InterestEvolution(d).double()
    with torch.no_grad():
        got = layer(H, v, mask)
        for b in range(B):
            n = int(lengths[b])
            if n == 0:
                assert torch.equal(got[b], torch.zeros(d, dtype=torch.float64))
                continue
            seq = H[b, :n].flip(0)  # stored most recent first → oldest first
            h, _ = layer.extractor(seq.unsqueeze(0))
            h = h[0]
            a = torch.softmax(h @ layer.W @ v[b], dim=0)  # Eq. 7 over this user's n behaviours
            state = torch.zeros(d, dtype=torch.float64)
            for t in range(n):
                state = layer.evolution(h[t:t + 1], state.unsqueeze(0), a[t:t + 1])[0]
            torch.testing.assert_close(got[b], state)


def test_dien_output_does_not_depend_on_the_padding_length():
    fields = synthetic_fields(with_history=True)
    batch = _batch_with_known_targets(fields)
    model = _model(DIEN, fields).eval()
    hist = batch.sequences["history"]
    longer = torch.cat([hist, torch.zeros(len(batch), 9, dtype=hist.dtype)], dim=1)
    shorter = hist[:, :int((hist != 0).sum(1).max())]
    with torch.no_grad():
        outs = [model(Batch(batch.x, batch.y, batch.idx, {"history": h})) for h in (hist, longer, shorter)]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(outs[0], outs[2], rtol=1e-6, atol=1e-7)


def test_din_output_does_not_depend_on_the_padding_length():
    fields = synthetic_fields(with_history=True)
    batch = _batch_with_known_targets(fields)
    model = _model(DIN, fields).eval()
    hist = batch.sequences["history"]
    longer = torch.cat([hist, torch.zeros(len(batch), 9, dtype=hist.dtype)], dim=1)
    with torch.no_grad():
        a, b = model(batch), model(Batch(batch.x, batch.y, batch.idx, {"history": longer}))
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
