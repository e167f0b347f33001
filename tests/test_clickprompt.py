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


# -- faithful knobs and the alignment diagnostic (issue 15) -----------------------------------------------------

def _ctx(tiny_data, tmp_path, **train):
    from ctrbench.context import RunContext
    from ctrbench.spec import ComponentRef, RunSpec
    from ctrbench.trainer import TrainConfig, Trainer

    spec = RunSpec("t", ComponentRef("tiny"), ComponentRef("clickprompt"),
                   ComponentRef("dnn", {"embed_dim": 4, "hidden_units": [8]}), ComponentRef("random-bert"), train, 0)
    trainer = Trainer(TrainConfig(**{"epochs": 1, "batch_size": 512, **train}), torch.device("cpu"))
    return RunContext(spec, tiny_data, load_plugins(), trainer, torch.device("cpu"), trainer.reporter, tmp_path)


def test_pamlm_learning_rates_reach_the_right_parameter_groups(tiny_data):
    from ctrbench_clickprompt.config import ClickPromptConfig
    from ctrbench_clickprompt.method import pamlm_param_groups

    model = _model(tiny_data)
    groups = pamlm_param_groups(model, ClickPromptConfig(pretrain_lr=5e-5, pretrain_ctr_lr=1e-3))
    opt = torch.optim.AdamW(groups, lr=99.0)
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert set(by_lr) == {5e-5, 1e-3}
    assert by_lr[5e-5] == {id(p) for p in model.plm.parameters()}
    assert by_lr[1e-3] == {id(p) for p in [*model.ctr.parameters(), *model.generator.parameters()]}
    one = pamlm_param_groups(model, ClickPromptConfig(pretrain_lr=5e-5))
    assert len(one) == 1 and id(model.alpha) not in {id(p) for p in one[0]["params"]}


def test_xavier_embedding_init_is_per_field_and_reaches_every_arm(tiny_data, tmp_path):
    ctx = _ctx(tiny_data, tmp_path, embedding_init="xavier_normal")
    default = _ctx(tiny_data, tmp_path).build_ctr()
    emb = ctx.build_ctr().embedding  # what both the `ctr` method and ClickPrompt build through
    for f in tiny_data.fields:
        expected = (2.0 / (f.vocab_size + 4)) ** 0.5
        assert emb.table(f.name).std().item() == pytest.approx(expected, rel=0.35)
    assert default.embedding.weight.std().item() < 1e-3  # the backbones' own N(0, 1e-4)
    from ctrbench_methods import plugin as ctr_method

    assert "build_ctr" in open(ctr_method.__file__).read()  # the baseline arm builds its model the same way


def test_value_tokens_mark_ids_and_never_template_words(tiny_data):
    from ctrbench_clickprompt.diagnostic import ValueTokens, id_fields

    model = _model(tiny_data)
    tok = model.plm.tokenizer
    assert id_fields(tiny_data) == ["user_id", "item_id"]
    from ctrbench.text import render_rows

    rows = torch.arange(4)
    enc = tok(render_rows(tiny_data, rows.numpy()), padding=True, return_tensors="pt")
    flags = ValueTokens(tiny_data, tok, ["user_id", "item_id"]).flags(rows, enc["input_ids"])
    for b in range(4):
        marked = set(tok.convert_ids_to_tokens(enc["input_ids"][b][flags[b]].tolist()))
        u, i = tiny_data.vocab["user_id"][tiny_data.X[b, 0]], tiny_data.vocab["item_id"][tiny_data.X[b, 1]]
        own = set(tok.convert_ids_to_tokens(tok(f"{u} {i}", add_special_tokens=False)["input_ids"]))
        assert marked and marked <= own
        assert not marked & {"is", ".", "user", "item", "category"}  # template words are never values


def test_diagnostic_scores_the_same_positions_and_shuffling_changes_only_prompts(tiny_data):
    from ctrbench.engine import DeviceData
    from ctrbench_clickprompt.diagnostic import alignment_diagnostic

    model = _model(tiny_data)
    with torch.no_grad():  # distinct prompts per sample (N(0, 1e-4) tables make them all but identical)
        model.ctr.embedding.weight.normal_(0.0, 1.0)
    dd = DeviceData(tiny_data, torch.device("cpu"))
    rows = torch.arange(2400, 2464)
    d1 = alignment_diagnostic(model, tiny_data, rows, dd, mask_prob=0.3, seed=0)
    d2 = alignment_diagnostic(model, tiny_data, rows, dd, mask_prob=0.3, seed=0)
    assert d1 == d2 and d1.tokens > 0 and d1.rows == 64
    assert d1.true != d1.shuffled  # different prompts, different losses
    # prompts identical for every sample (generator output bias only): shuffling cannot change anything
    with torch.no_grad():
        model.generator.net[2].weight.zero_()
    same = alignment_diagnostic(model, tiny_data, rows, dd, mask_prob=0.3, seed=0)
    assert same.true == pytest.approx(same.shuffled, abs=1e-6) and same.tokens == d1.tokens
    assert same.none == pytest.approx(d1.none, abs=1e-6)  # no prompts: independent of the generator


def test_diagnostic_gap_standard_error_equals_a_direct_recomputation(tiny_data):
    """The gap's standard error from the stored sum of squared per-token differences equals the textbook
    sd/sqrt(n) of the paired per-token differences, recomputed here from the same masked positions."""
    import numpy as np

    from ctrbench.engine import DeviceData
    from ctrbench.text import IGNORE, mask_tokens, maskable
    from ctrbench_clickprompt.diagnostic import ValueTokens, alignment_diagnostic, id_fields

    model = _model(tiny_data)
    with torch.no_grad():
        model.ctr.embedding.weight.normal_(0.0, 1.0)
    dd = DeviceData(tiny_data, torch.device("cpu"))
    rows = torch.arange(2400, 2464)
    diag = alignment_diagnostic(model, tiny_data, rows, dd, mask_prob=0.3, seed=0, batch_size=64)
    model.eval()
    plm = model.plm
    with torch.no_grad():  # the same batch, masks and shuffle as the diagnostic's single batch of 64
        batch = dd.batch(rows)
        _, prompts = model.hidden_and_prompts(batch)
        ids, mask = model.text(batch)
        corrupted, labels = mask_tokens(ids, maskable(ids, mask, sorted(plm.tokenizer.all_special_ids)),
                                        mask_token_id=plm.mask_token_id, vocab_size=plm.vocab_size, mask_prob=0.3,
                                        generator=torch.Generator().manual_seed(2))
        is_id = ValueTokens(tiny_data, plm.tokenizer, id_fields(tiny_data)).flags(batch.idx, ids) & (labels != IGNORE)
        per_token = {}
        for name, p in (("true", prompts), ("shuffled", torch.roll(prompts, 1, 0))):
            logits = plm.mlm_head(plm.encode(corrupted, mask, p, model.prompt_mode))
            per_token[name] = torch.nn.functional.cross_entropy(logits[is_id].float(), labels[is_id],
                                                                reduction="none").double().numpy()
    d = per_token["shuffled"] - per_token["true"]
    assert diag.id_tokens == len(d) >= 2
    assert diag.id_gap == pytest.approx(d.mean(), abs=1e-5)
    assert diag.id_gap_se == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)), rel=1e-4)
    assert diag.to_dict()["id_gap_se"] == diag.id_gap_se
    from ctrbench_clickprompt.diagnostic import AlignmentDiagnostic

    old = AlignmentDiagnostic(1, 1, 5, 1.0, 1.0, 1.0, 1.0, 1.2, 1.0)  # a stage stored before the spread
    assert np.isnan(old.id_gap_se)


def test_diagnostic_counts_the_dead_dimensions_of_q(tiny_data):
    """Units of the backbone's last ReLU layer driven below zero for every input are constant (0) over the
    held-out rows: counted against a direct scan of q, before and after killing five of the 16 units."""
    from ctrbench.engine import DeviceData
    from ctrbench_clickprompt.diagnostic import alignment_diagnostic

    model = _model(tiny_data)
    dd = DeviceData(tiny_data, torch.device("cpu"))
    rows = torch.arange(2400, 2464)

    def direct() -> int:
        with torch.no_grad():
            q = torch.cat([model.ctr.interact(model.ctr.embed(dd.batch(rows[i:i + 7]))) for i in range(0, 64, 7)])
        return int((q.max(0).values == q.min(0).values).sum())

    before = alignment_diagnostic(model, tiny_data, rows, dd, mask_prob=0.3, seed=0, batch_size=16)
    assert before.q_dims == 16 and before.q_constant == direct() < 16
    last = [m for m in model.ctr.mlp.net if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight[:5] = 0.0
        last.bias[:5] = -1.0  # ReLU(-1) = 0 for every row
    after = alignment_diagnostic(model, tiny_data, rows, dd, mask_prob=0.3, seed=0, batch_size=16)
    assert after.q_constant == direct() >= 5 and after.q_constant - before.q_constant <= 5
    assert after.q_constant_fraction == pytest.approx(after.q_constant / 16)
    assert after.to_dict()["q_constant_fraction"] == after.q_constant_fraction


def test_pamlm_stage_stores_the_diagnostic_and_runs_report_it(tiny_data, tmp_path):
    import json

    from ctrbench_clickprompt.method import clickprompt

    ctx = _ctx(tiny_data, tmp_path)
    method = clickprompt(pretrain_epochs=1, pretrain_batch_size=512, max_length=16, num_prompts=1,
                         diagnostic_rows=100, pretrain_rows="train_valid", mask_values_only=True,
                         pretrain_ctr_lr=1e-3, pretrain_schedule="linear", pretrain_warmup=0.1)
    preds = method.run(ctx)
    (stage,) = (tmp_path).glob("clickprompt-pamlm-*")
    info = json.loads((stage / "pretrain.json").read_text())
    a = info["alignment"]
    assert a["rows"] == 100 and a["id_gap"] == pytest.approx(a["shuffled_id"] - a["true_id"])
    assert info["samples"] == len(tiny_data.splits["train"]) + len(tiny_data.splits["valid"])
    assert preds.extra["pamlm_id_gap"] == pytest.approx(a["id_gap"])
    assert a["q_dims"] > 0 and preds.extra["pamlm_q_constant_fraction"] == pytest.approx(a["q_constant"] / a["q_dims"])
