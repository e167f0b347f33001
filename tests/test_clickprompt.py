"""ClickPrompt: masking statistics, gradient paths, the fusion, the w/o-PLM model, stage reuse."""

from __future__ import annotations

import textwrap

import pytest
import torch

import ctrbench.cli as cli
from ctrbench.plugins import load_plugins
from ctrbench.text import IGNORE, TokenTable, mask_tokens
from ctrbench.trainer import DeviceData
from ctrbench_clickprompt.model import ClickPromptModel, ctr_logit
from ctrbench_ctr.dnn import DNN


def test_masking_statistics_on_10k_tokens():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (100, 120), generator=g)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, :10] = False  # e.g. [CLS] and padding are never selected
    corrupted, labels = mask_tokens(ids, maskable, mask_token_id=3, vocab_size=1000, mask_prob=0.15,
                                    generator=torch.Generator().manual_seed(1))
    selected = labels != IGNORE
    n_text = int(maskable.sum())  # 11,000 maskable tokens
    assert not selected[:, :10].any()
    assert abs(selected.sum().item() / n_text - 0.15) < 0.01
    n_sel = int(selected.sum())
    as_mask = (corrupted[selected] == 3).sum().item() / n_sel
    kept = (corrupted[selected] == ids[selected]).sum().item() / n_sel
    assert abs(as_mask - 0.8) < 0.03
    assert abs(kept - 0.1) < 0.03  # (a random replacement equal to the original is 1 in 1000)
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(corrupted[~selected], ids[~selected])


def _model(tiny_data, **kw):
    plm = load_plugins().registry("plm").get("random-bert").create()
    torch.manual_seed(0)
    ctr = DNN(tiny_data.fields, embed_dim=4, hidden_units=(16,))
    n = tiny_data.num_samples
    ids = torch.randint(5, 100, (n, 12)).numpy().astype("uint16")
    tokens = TokenTable(ids, torch.full((n,), 12).numpy().astype("uint8"), pad_token_id=0)
    return ClickPromptModel(ctr, plm, tokens, num_prompts=3, prompt_mode=kw.pop("mode", "layerwise"), **kw)


def _batch(tiny_data, n=16):
    return DeviceData(tiny_data, torch.device("cpu")).batch(torch.arange(n))


@pytest.mark.parametrize("mode", ["layerwise", "first_layer"])
def test_mlm_loss_gradient_reaches_the_ctr_embedding_tables(tiny_data, mode):
    model = _model(tiny_data, mode=mode)
    batch = _batch(tiny_data)
    ids, mask = model.text(batch)
    labels = torch.full_like(ids, IGNORE)
    labels[:, 3] = ids[:, 3]
    corrupted = ids.clone()
    corrupted[:, 3] = model.plm.mask_token_id
    model.mlm_loss(batch, corrupted, mask, labels).backward()
    grad = model.ctr.embedding.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    rows = (batch.x + model.ctr.embedding.offsets).unique()
    assert (grad[rows].abs().sum(1) > 0).all()  # every looked-up ID row learns from the MLM loss
    assert model.generator.net[0].weight.grad.abs().sum() > 0


def test_alpha_one_gives_exactly_the_ctr_model(tiny_data):
    model = _model(tiny_data)
    batch = _batch(tiny_data)
    with torch.no_grad():
        model.alpha.fill_(1.0)
        fused = model(batch)
        alone = model.ctr(batch)
    torch.testing.assert_close(fused, alone, rtol=0, atol=1e-6)
    q = model.ctr.interact(model.ctr.embed(batch))
    torch.testing.assert_close(ctr_logit(model.ctr, batch, q), alone)


def test_without_prompt_the_plm_ignores_the_ids(tiny_data):
    model = _model(tiny_data, use_prompt=False)
    batch = _batch(tiny_data)
    with torch.no_grad():
        _, y_plm = model.parts(batch)
        model.ctr.embedding.weight.add_(1.0)
        _, y_plm_after = model.parts(batch)
    torch.testing.assert_close(y_plm, y_plm_after)
    model_p = _model(tiny_data)
    with torch.no_grad():
        _, before = model_p.parts(batch)
        model_p.ctr.embedding.weight.add_(1.0)
        _, after = model_p.parts(batch)
    assert not torch.allclose(before, after)


SUITE = """
schema_version: 1
name: cp-grid
analysis: ablation
datasets: [{name: synthetic, num_samples: 2000, num_fields: 4, vocab_size: 20}]
seeds: [1]
defaults:
  method: {name: clickprompt, pretrain_epochs: 1, pretrain_batch_size: 512, pretrain_lr: 0.001, max_length: 24,
           num_prompts: 2, plm_lr: 0.0}
  ctr: {name: dnn, embed_dim: 4, hidden_units: [16]}
  plm: random-bert
  train: {epochs: 1, batch_size: 512}
variants:
  with-plm: {}
  without-plm: {method.finetune: without_plm}
  wo-prompt: {method.use_prompt: false}
baseline: {variant: with-plm}
"""


@pytest.mark.slow
def test_one_pretraining_serves_three_finetunes(tmp_path, monkeypatch, capsys):
    import ctrbench_clickprompt.method as method

    calls = []
    real = method.pretrain_pamlm

    def counting(ctx, model, cfg, out_dir):
        calls.append(ctx.spec.labels["variant"])
        real(ctx, model, cfg, out_dir)

    monkeypatch.setattr(method, "pretrain_pamlm", counting)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(textwrap.dedent(SUITE))
    assert cli.main(["run", "s.yaml", "--threads", "1", "--workers", "1"]) == 0  # in-process: the patch applies
    assert len(calls) == 1  # the first finetune pretrains, the other two reuse the stage
    assert len(list((tmp_path / "runs" / "_stages").glob("clickprompt-pamlm-*"))) == 1
    from ctrbench.store import Store

    results = {r.spec.labels["variant"]: r for r in Store(tmp_path / "runs").runs("cp-grid")}
    assert set(results) == {"with-plm", "without-plm", "wo-prompt"}
    assert all(r.result.ok for r in results.values())
    assert results["without-plm"].result.n_params < results["with-plm"].result.n_params
    assert "pretrain_seconds" in results["wo-prompt"].result.metrics


def test_without_plm_finetune_is_exactly_the_backbone_class(tiny_data, tmp_path):
    from ctrbench.context import RunContext
    from ctrbench.spec import ComponentRef, RunSpec
    from ctrbench.trainer import TrainConfig, Trainer
    from ctrbench_clickprompt.method import clickprompt

    plugins = load_plugins()
    spec = RunSpec("t", ComponentRef("tiny"), ComponentRef("clickprompt"),
                   ComponentRef("dnn", {"embed_dim": 4, "hidden_units": [8]}), ComponentRef("random-bert"),
                   {"epochs": 1}, 0)
    trainer = Trainer(TrainConfig(epochs=1, batch_size=512), torch.device("cpu"))
    ctx = RunContext(spec, tiny_data, plugins, trainer, torch.device("cpu"), trainer.reporter, tmp_path)
    fitted = []
    real_fit = trainer.fit
    trainer.fit = lambda model, data, **kw: (fitted.append(model), real_fit(model, data, **kw))[1]
    method = clickprompt(finetune="without_plm", pretrain_epochs=1, pretrain_batch_size=512, max_length=16,
                         num_prompts=1)
    preds = method.run(ctx)
    assert type(fitted[0]) is DNN
    assert preds.n_params == sum(p.numel() for p in fitted[0].parameters())
    with pytest.raises(ValueError, match="without_plm needs pretrain=true"):
        clickprompt(finetune="without_plm", pretrain=False)
