"""FLIP: field-level masks that never leak the masked value, the field-recovery and instance contrastive losses
against direct computations, the fusion, and the method through the conformance kit and one run on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctrbench.protocols import MethodNeeds
from ctrbench.results import Predictions
from ctrbench.testing import check_method, synthetic_data
from ctrbench.text import IGNORE
from ctrbench.trainer import DeviceData
from ctrbench_flip.config import FLIPConfig
from ctrbench_flip.model import FLIPModel, choose_fields, field_recovery_loss, mask_fields, mask_text
from ctrbench_flip.plugin import flip
from ctrbench_flip.text import FieldTokens

NEEDS = MethodNeeds(plm=("masked_lm",), ctr=True)
QUICK = {"pretrain_epochs": 1, "pretrain_batch_size": 64, "max_length": 32, "projection_dim": 16,
         "field_proj_size": 8}


@pytest.fixture(scope="module")
def parts():
    from ctrbench_ctr.dnn import DNN
    from ctrbench_plm.masked_lm import random_bert

    data = synthetic_data()
    plm = random_bert()
    tokens = FieldTokens.build(data, plm, 32)
    torch.manual_seed(0)
    ctr = DNN(data.fields, embed_dim=4, hidden_units=(8,))
    model = FLIPModel(ctr, plm, tokens, FLIPConfig(**QUICK)).eval()
    batch = DeviceData(data, torch.device("cpu")).batch(torch.arange(32))
    return data, plm, tokens, model, batch


def test_value_tokens_are_tagged_with_their_field(parts):
    data, plm, tokens, _, batch = parts
    ids, mask, field_of = tokens.gather(batch.idx, torch.device("cpu"))
    for b in range(4):
        for f, fld in enumerate(data.fields):
            value = data.vocab[fld.name][int(batch.x[b, f])]
            expected = plm.tokenizer.convert_tokens_to_ids(plm.tokenizer.tokenize(value))
            assert ids[b][field_of[b] == f].tolist() == expected
    assert (field_of[mask == 0] == -1).all()


def test_field_masks_never_leak_the_masked_value(parts):
    data, plm, tokens, model, batch = parts
    F_ = len(data.fields)
    masked = choose_fields(len(batch), F_, 0.5, torch.Generator().manual_seed(0))
    assert (masked.sum(1) == max(1, int(F_ * 0.5))).all()
    # ID side: the masked row holds the unknown index there, whatever the value was
    x_masked = mask_fields(batch.x, masked)
    assert (x_masked[masked] == 0).all() and torch.equal(x_masked[~masked], batch.x[~masked])
    other = batch.x.clone()
    other[masked] = (other[masked] % 3) + 1  # other values in the masked fields
    assert not torch.equal(other, batch.x)
    assert torch.equal(mask_fields(other, masked), x_masked)
    torch.testing.assert_close(model.id_state(batch, x_masked), model.id_state(batch, mask_fields(other, masked)))
    # text side: every token of a masked field's value is [MASK]; no other token changes
    ids, mask, field_of = tokens.gather(batch.idx, torch.device("cpu"))
    corrupted, labels = mask_text(ids, field_of, masked, plm.mask_token_id)
    for b in range(len(batch)):
        for f in range(F_):
            at = field_of[b] == f
            assert at.any()
            if masked[b, f]:
                assert (corrupted[b][at] == plm.mask_token_id).all()
                assert not set(ids[b][at].tolist()) & set(corrupted[b].tolist()) - set(ids[b][~at].tolist())
                assert torch.equal(labels[b][at], ids[b][at])
            else:
                assert torch.equal(corrupted[b][at], ids[b][at]) and (labels[b][at] == IGNORE).all()
        assert torch.equal(corrupted[b][field_of[b] < 0], ids[b][field_of[b] < 0])


def test_field_recovery_loss_is_a_direct_cross_entropy(parts):
    data, _, _, model, batch = parts
    torch.manual_seed(1)
    enc = torch.randn(len(batch), len(data.fields), 8)
    with torch.no_grad():
        model.field_bias.weight.normal_()
    masked = choose_fields(len(batch), len(data.fields), 0.5, torch.Generator().manual_seed(2))
    loss = field_recovery_loss(enc, masked, batch.x, model.field_values, model.field_bias)
    terms = []
    for b in range(len(batch)):
        for f, fld in enumerate(data.fields):
            if masked[b, f]:
                W = model.field_values.table(fld.name)
                c = model.field_bias.table(fld.name)[:, 0]
                terms.append(-torch.log_softmax(W @ enc[b, f] + c, dim=0)[batch.x[b, f]])
    torch.testing.assert_close(loss, torch.stack(terms).mean())


def test_instance_contrastive_loss_is_the_symmetric_infonce(parts):
    _, plm, _, model, _ = parts
    torch.manual_seed(3)
    q, cls = torch.randn(6, model.ctr.hidden_dim), torch.randn(6, plm.hidden_size)
    loss = model.icl_loss(q, cls)
    a, b = model.rec_projection(q), model.text_projection(cls)
    tau = model.cfg.temperature
    rec_to_text = [-torch.log(torch.exp(a[i] @ b[i] / tau) / sum(torch.exp(a[i] @ b[j] / tau) for j in range(6)))
                   for i in range(6)]
    text_to_rec = [-torch.log(torch.exp(b[i] @ a[i] / tau) / sum(torch.exp(b[i] @ a[j] / tau) for j in range(6)))
                   for i in range(6)]
    torch.testing.assert_close(loss, (torch.stack(rec_to_text).mean() + torch.stack(text_to_rec).mean()) / 2)


def test_pretraining_objectives_reach_both_towers(parts):
    _, _, _, model, batch = parts
    model.train()
    model.zero_grad()
    losses = model.pretrain_losses(batch, torch.Generator().manual_seed(0))
    assert set(losses) == {"icl", "mtm", "mlm"}
    sum(losses.values()).backward()
    assert model.ctr.embedding.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.plm.parameters())
    model.zero_grad()
    model.eval()


def test_fused_logit_mixes_the_towers_with_alpha(parts):
    _, _, _, model, batch = parts
    with torch.no_grad():
        y_id, y_text = model.parts(batch)
        model.alpha.fill_(1.0)
        torch.testing.assert_close(model(batch), y_id)
        model.alpha.fill_(0.25)
        torch.testing.assert_close(model(batch), 0.25 * y_id + 0.75 * y_text)
        model.alpha.fill_(0.0)


def test_flip_passes_the_method_kit():
    check_method(flip, config=QUICK, needs=NEEDS, name="flip")


def test_end_to_end_run_gives_predictions(tmp_path):
    from ctrbench.context import RunContext
    from ctrbench.plugins import load_plugins
    from ctrbench.spec import ComponentRef, RunSpec
    from ctrbench.trainer import TrainConfig, Trainer

    data = synthetic_data()
    spec = RunSpec("t", ComponentRef(data.name), ComponentRef("flip", QUICK),
                   ComponentRef("dnn", {"embed_dim": 4, "hidden_units": [8]}), ComponentRef("random-bert"),
                   {"epochs": 1, "batch_size": 64}, 0)
    trainer = Trainer(TrainConfig(epochs=1, batch_size=64), torch.device("cpu"))
    ctx = RunContext(spec, data, load_plugins(), trainer, torch.device("cpu"), trainer.reporter, tmp_path)
    preds = flip(**QUICK).run(ctx)
    assert isinstance(preds, Predictions)
    assert preds.valid.shape == (len(data.splits["valid"]),) and np.isfinite(preds.valid).all()
    assert {"alpha", "pretrain_icl_loss", "pretrain_mtm_loss", "pretrain_mlm_loss"} <= set(preds.extra)
    assert len(list(tmp_path.glob("flip-pretrain-*"))) == 1


def test_config_rejects_an_empty_pretraining():
    with pytest.raises(ValueError, match="at least one"):
        FLIPConfig(use_icl=False, use_mtm=False, use_mlm=False)
