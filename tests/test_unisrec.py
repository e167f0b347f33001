"""UniSRec: the MoE whitening adaptor, the frozen PLM read once per item, the history padding mask, the contrastive
pretraining, and the method through the conformance kit and one run on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctrbench.plugins import load_plugins
from ctrbench.protocols import MethodNeeds
from ctrbench.results import Predictions
from ctrbench.testing import check_method, synthetic_data
from ctrbench_unisrec.config import UniSRecConfig
from ctrbench_unisrec.layers import MoEAdaptor, SequenceEncoder, chronological_items
from ctrbench_unisrec.model import UniSRec
from ctrbench_unisrec.plugin import unisrec

NEEDS = MethodNeeds(plm=("masked_lm",), ctr=True, history=True, item_text=True)
QUICK = {"hidden_size": 16, "n_heads": 2, "inner_size": 16, "n_exps": 2, "max_length": 16, "pretrain_epochs": 1,
         "pretrain_batch_size": 64}


def _randomised_adaptor(noise: bool = True) -> MoEAdaptor:
    torch.manual_seed(0)
    adaptor = MoEAdaptor(3, 6, 4, dropout=0.2, noise=noise)
    with torch.no_grad():  # the gate and biases start at zero: give every term a value
        adaptor.w_gate.normal_()
        adaptor.w_noise.normal_()
        for expert in adaptor.experts:
            expert.bias.normal_()
    return adaptor


def test_adaptor_is_the_gated_sum_of_whitened_experts():
    adaptor = _randomised_adaptor().eval()
    x = torch.randn(2, 5, 6)
    out = adaptor(x)
    assert out.shape == (2, 5, 4)
    g = torch.softmax(x @ adaptor.w_gate, dim=-1)  # Eq. 3 without noise (eval)
    direct = sum(g[..., k:k + 1] * ((x - e.bias) @ e.lin.weight.T) for k, e in enumerate(adaptor.experts))  # Eq. 1-2
    torch.testing.assert_close(out, direct)


def test_gating_noise_only_in_training():
    adaptor = _randomised_adaptor()
    x = torch.randn(8, 6)
    adaptor.train()
    for e in adaptor.experts:
        e.dropout.p = 0.0  # isolate the gate
    noisy = adaptor.gates(x)
    adaptor.eval()
    clean = adaptor.gates(x)
    torch.testing.assert_close(clean, torch.softmax(x @ adaptor.w_gate, dim=-1))
    assert not torch.allclose(noisy, clean)
    torch.testing.assert_close(noisy.sum(-1), torch.ones(8))
    quiet = _randomised_adaptor(noise=False).train()
    torch.testing.assert_close(quiet.gates(x), torch.softmax(x @ quiet.w_gate, dim=-1))


def test_encoder_reads_only_the_valid_items_of_a_history():
    torch.manual_seed(0)
    enc = SequenceEncoder(max_length=5, hidden_size=8, n_layers=2, n_heads=2, inner_size=16, dropout=0.0).eval()
    emb = torch.randn(3, 5, 8)
    valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    s = enc(emb, valid)
    assert s.shape == (3, 8)
    changed = emb.clone()
    changed[0, 3:] = 100 * torch.randn(2, 8)  # row 0's padding
    changed[2] = torch.randn(5, 8)  # row 2 is all padding
    torch.testing.assert_close(enc(changed, valid), s)
    assert torch.equal(s[2], torch.zeros(8))  # an empty history is the zero vector
    changed[0, 0] = torch.randn(8)  # a valid item of row 0 does matter (a constant shift would not: LayerNorm)
    assert not torch.allclose(enc(changed, valid)[0], s[0])


def test_history_is_put_oldest_first_and_item_drop_keeps_order():
    history = torch.tensor([[5, 4, 3, 0], [7, 0, 0, 0], [0, 0, 0, 0]])  # most recent first
    assert chronological_items(history).tolist() == [[3, 4, 5, 0], [7, 0, 0, 0], [0, 0, 0, 0]]
    cfg = UniSRecConfig(hidden_size=8, n_exps=2, item_drop_ratio=0.5, item_drop_coefficient=1.0)
    model = UniSRec(torch.randn(9, 6), None, 6, cfg)
    seq = torch.tensor([[1, 2, 3, 4, 5, 6]] * 50)
    out, word_dropped = model.augment(seq, torch.Generator().manual_seed(0))
    for row in out.tolist():
        kept = [i for i in row if i]
        assert kept[0] == 1 and kept == sorted(kept) and row[len(kept):] == [0] * (6 - len(kept))
    assert 1 < np.mean([len([i for i in r if i]) for r in out.tolist()]) < 6  # about half dropped
    assert word_dropped is None  # item drop: the clean table
    word = UniSRec(torch.randn(9, 6), torch.randn(9, 6), 6, UniSRecConfig(hidden_size=8, n_exps=2,
                                                                       item_drop_coefficient=0.0)).eval()
    out, word_dropped = word.augment(seq, torch.Generator().manual_seed(0))
    assert torch.equal(out, seq) and 0.05 < word_dropped.float().mean() < 0.4  # word drop keeps the items
    mixed = torch.where(word_dropped.unsqueeze(-1), word.adaptor(word.plm_aug[seq]), word.adaptor(word.plm[seq]))
    torch.testing.assert_close(word.sequence(seq, word_dropped), word.encoder(mixed, seq != 0))
    torch.testing.assert_close(word.items(seq), word.adaptor(word.plm[seq]))  # distinct items adapted once: exact


def test_pretraining_losses_are_the_papers_infonce():
    torch.manual_seed(0)
    cfg = UniSRecConfig(hidden_size=8, n_exps=2, inner_size=8, dropout=0.0, adaptor_dropout=0.0, gate_noise=False,
                        word_drop_ratio=0.0)
    model = UniSRec(torch.randn(10, 6), None, 4, cfg).eval()
    seq = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0], [6, 7, 8, 9], [2, 0, 0, 0]])
    target = torch.tensor([3, 7, 3, 5])  # rows 0 and 2 share their next item
    seq_item, _ = model.pretrain_loss(seq, target, torch.Generator().manual_seed(0))
    s = torch.nn.functional.normalize(model.sequence(seq), dim=-1)
    v = torch.nn.functional.normalize(model.items(target), dim=-1)
    losses = []
    for i in range(4):  # Eq. 7: the next items of the batch are the negatives, except copies of the positive
        negatives = [j for j in range(4) if j == i or target[j] != target[i]]
        logits = torch.stack([s[i] @ v[j] / 0.07 for j in negatives])
        losses.append(-torch.log_softmax(logits, 0)[negatives.index(i)])
    torch.testing.assert_close(seq_item, torch.stack(losses).mean())


def _ctx(stage_root, **config):
    from ctrbench.context import RunContext
    from ctrbench.spec import ComponentRef, RunSpec
    from ctrbench.trainer import TrainConfig, Trainer

    data = synthetic_data()
    spec = RunSpec("t", ComponentRef(data.name), ComponentRef("unisrec", config),
                   ComponentRef("dnn", {"embed_dim": 4, "hidden_units": [8]}), ComponentRef("random-bert"),
                   {"epochs": 1, "batch_size": 64}, 0)
    trainer = Trainer(TrainConfig(epochs=1, batch_size=64), torch.device("cpu"))
    return RunContext(spec, data, load_plugins(), trainer, torch.device("cpu"), trainer.reporter, stage_root)


def test_frozen_plm_reads_each_item_text_once_and_gives_predictions(tmp_path, monkeypatch):
    from ctrbench_plm.masked_lm import MaskedLM, random_bert

    encoded, plms = [], []
    real_encode = MaskedLM.encode

    def counting(self, ids, mask, *args, **kwargs):
        encoded.append(ids.shape[0])
        plms.append(self)
        return real_encode(self, ids, mask, *args, **kwargs)

    monkeypatch.setattr(MaskedLM, "encode", counting)
    ctx = _ctx(tmp_path, **QUICK)
    preds = unisrec(**QUICK).run(ctx)
    n_items = ctx.data.fields[ctx.data.field_index("item_id")].vocab_size
    assert sum(encoded) == 2 * (n_items - 1)  # every item once, plus once word-dropped; row 0 is padding
    assert isinstance(preds, Predictions) and preds.test.shape == (len(ctx.data.splits["test"]),)
    assert np.isfinite(preds.test).all()
    fresh = random_bert()
    for (name, p), q in zip(plms[0].named_parameters(), fresh.parameters(), strict=True):
        assert p.grad is None and torch.equal(p, q), name  # read under no_grad, never trained
    encoded.clear()
    again = unisrec(**QUICK).run(_ctx(tmp_path, **QUICK))  # stages cached: the PLM is not read again
    assert encoded == []
    np.testing.assert_array_equal(again.test, preds.test)


def test_unisrec_passes_the_method_kit():
    check_method(unisrec, config=QUICK, needs=NEEDS, name="unisrec")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="divisible"):
        UniSRecConfig(hidden_size=15, n_heads=2)
    with pytest.raises(ValueError, match="item_drop_ratio"):
        UniSRecConfig(item_drop_ratio=1.5)
