"""The language-model baselines CTR-BERT, PTab and CTRL: each one's defining computation against a direct
reference, the conformance kit, and an end-to-end `ctrbench run` on tiny data."""

from __future__ import annotations

import inspect
import math
import textwrap
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ctrbench.cli as cli
from ctrbench import hookimpl
from ctrbench.context import RunContext
from ctrbench.engine import DeviceData
from ctrbench.plugins import load_plugins
from ctrbench.protocols import MethodNeeds, Provides
from ctrbench.spec import ComponentRef, RunSpec
from ctrbench.testing import check_method, synthetic_data
from ctrbench.text import IGNORE, mask_tokens
from ctrbench.trainer import TrainConfig, Trainer
from ctrbench_ctr.dnn import DNN
from ctrbench_textbaselines.config import CTRBertConfig, CTRLConfig, PTabConfig

TINY_CTR = ComponentRef("dnn", {"embed_dim": 4, "hidden_units": [8]})


def _ctx(tmp_path, method: str, ctr: ComponentRef | None = TINY_CTR, **train) -> RunContext:
    data = synthetic_data()
    spec = RunSpec("t", ComponentRef(data.name), ComponentRef(method), ctr, ComponentRef("random-bert"),
                   {"epochs": 1, "batch_size": 64, **train}, 0)
    trainer = Trainer(TrainConfig(**spec.train), torch.device("cpu"))
    return RunContext(spec, data, load_plugins(), trainer, torch.device("cpu"), trainer.reporter, tmp_path)


def _batch(ctx: RunContext, rows) -> object:
    return DeviceData(ctx.data, torch.device("cpu")).batch(torch.as_tensor(rows))


def _text(data, row: int, fields: list[str], sep: str = " is ", end: str = ".") -> str:
    """A row's phrases written out by hand from the vocab and the field labels (the reference texts)."""
    names = [f.name for f in data.fields]
    out = []
    for name in fields:
        j = names.index(name)
        out.append(f"{data.fields[j].label}{sep}{data.vocab[name][int(data.X[row, j])]}{end}")
    return " ".join(out)


# -- registration ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "config", "needs"), [
    ("ctr-bert", CTRBertConfig, MethodNeeds(plm=("masked_lm",), ctr=True, item_text=True)),
    ("ptab", PTabConfig, MethodNeeds(plm=("masked_lm",))),
    ("ctrl", CTRLConfig, MethodNeeds(plm=("masked_lm",), ctr=True)),
])
def test_registered_with_the_config_signature_and_needs(name, config, needs):
    entry = load_plugins().registry("methods").get(name)
    assert entry.plugin == "builtin-textbaselines"
    assert inspect.signature(entry.factory) == inspect.signature(config)
    assert entry.metadata["needs"] == needs and entry.paper and entry.summary
    with pytest.raises(TypeError):
        entry.factory(no_such_knob=1)


# -- CTR-BERT -------------------------------------------------------------------------------------------------

def test_ctr_bert_towers_read_only_their_own_side(tmp_path):
    from ctrbench_textbaselines.ctr_bert import CTRBert

    ctx = _ctx(tmp_path, "ctr-bert")
    model = CTRBert(CTRBertConfig(max_length=32)).build(ctx).eval()
    seen: dict[str, torch.Tensor] = {}
    for side in ("user", "item"):
        tower = getattr(model, f"{side}_tower")
        real = tower.encode
        tower.encode = lambda ids, mask, real=real, side=side: (seen.__setitem__(side, ids), real(ids, mask))[1]
    rows = [3, 40, 41, 200]
    with torch.no_grad():
        model(_batch(ctx, rows))
    tok = model.user_tower.tokenizer
    data = ctx.data
    for side, fields in (("user", ["user_id", "age"]), ("item", ["item_id", "genre"])):
        want = tok([_text(data, r, fields) for r in rows], padding=True, return_tensors="pt")["input_ids"]
        assert torch.equal(seen[side], want), side
    # no value of the other side's fields reaches a tower: "movie"/"genres" never in the user tower, "age" never
    # in the item tower
    user_words = set(tok.convert_ids_to_tokens(seen["user"].flatten().tolist()))
    item_words = set(tok.convert_ids_to_tokens(seen["item"].flatten().tolist()))
    assert "movie" not in user_words and "genres" not in user_words and "user" in user_words
    assert "age" not in item_words and "user" not in item_words and "movie" in item_words
    assert model.user_tower is not model.item_tower  # two towers (shared_towers=False)


def test_ctr_bert_fusion_equals_a_manual_computation(tmp_path):
    from ctrbench_textbaselines.ctr_bert import CTRBert

    ctx = _ctx(tmp_path, "ctr-bert")
    model = CTRBert(CTRBertConfig(max_length=32, fusion_hidden=8)).build(ctx).eval()
    with torch.no_grad():
        model.item_tower.model.base_model.embeddings.word_embeddings.weight.mul_(1.5)  # make the towers differ
        model.ctr.embedding.weight.normal_(0.0, 1.0)
    rows = [5, 6, 7, 250]
    batch = _batch(ctx, rows)
    data, tok = ctx.data, model.user_tower.tokenizer

    def cls_state(plm, texts):
        enc = tok(texts, padding=True, return_tensors="pt")
        return plm.model.bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[:, 0]

    with torch.no_grad():
        u = cls_state(model.user_tower, [_text(data, r, ["user_id", "age"]) for r in rows])
        i = cls_state(model.item_tower, [_text(data, r, ["item_id", "genre"]) for r in rows])
        dnn = model.ctr
        h = dnn.embed(batch).flatten(1)
        for layer in dnn.mlp.net if hasattr(dnn.mlp, "net") else dnn.mlp:
            h = layer(h)
        head = model.head
        z = torch.cat([u, i, h], dim=1)
        manual = torch.tanh(z @ head.projection.weight.T + head.projection.bias) @ head.fc.weight.T + head.fc.bias
        torch.testing.assert_close(model(batch), manual.squeeze(-1), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(u, i)


def test_ctr_bert_text_only_and_distillation_loss():
    from ctrbench_textbaselines.ctr_bert import distill_loss

    s, y, t = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, -0.5, 0.1])
    alpha = 0.3
    manual = 0.0
    # the hand computation in Python floats (pytest 9.2's approx refuses a 0-d tensor as the expected value)
    s, y, t = s.tolist(), y.tolist(), t.tolist()
    for k in range(3):
        p, q = 1 / (1 + math.exp(-s[k])), 1 / (1 + math.exp(-t[k]))
        manual += (1 - alpha) * -(y[k] * math.log(p) + (1 - y[k]) * math.log(1 - p))
        manual += alpha * -(q * math.log(p) + (1 - q) * math.log(1 - p))
    s, y, t = torch.tensor(s), torch.tensor(y), torch.tensor(t)
    assert distill_loss(s, y, t, alpha).item() == pytest.approx(manual / 3, rel=1e-5)
    assert distill_loss(s, y, t, 0.0).item() == pytest.approx(F.binary_cross_entropy_with_logits(s, y).item())


# -- PTab -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ptab_tokens():
    from ctrbench_plm.masked_lm import random_bert
    from ctrbench_textbaselines.ptab import PTabTokens

    plm = random_bert()
    data = synthetic_data()
    return data, plm, PTabTokens.build(data, plm, 40)


def test_ptab_texts_are_field_colon_value_and_value_flags_are_exact(ptab_tokens):
    from ctrbench_textbaselines.ptab import ptab_text

    data, plm, tokens = ptab_tokens
    tok = plm.tokenizer
    fields = [f.name for f in data.fields]
    for r in (0, 17, 299):
        text = ptab_text(data, r)
        assert text == _text(data, r, fields, sep=": ", end="")
        want = tok(text, truncation=True, max_length=40)["input_ids"]
        ids, mask = tokens.table.gather([r])
        assert ids[0, :int(mask.sum())].tolist() == want
        flagged = ids[0][torch.from_numpy(np.asarray(tokens.values[r]))].tolist()
        values = [data.vocab[n][int(data.X[r, j])] for j, n in enumerate(fields)]
        assert flagged == tok(" ".join(values), add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("scope", ["text", "values"])
def test_ptab_masking_selects_only_what_its_rule_allows(ptab_tokens, scope):
    from ctrbench_textbaselines.ptab import candidates

    data, plm, tokens = ptab_tokens
    rows = torch.arange(0, 240)
    ids, mask = tokens.table.gather(rows, trim=True)
    allowed = candidates(tokens, rows, ids, mask, plm.tokenizer.all_special_ids, scope)
    _, labels = mask_tokens(ids, allowed, mask_token_id=plm.mask_token_id, vocab_size=plm.vocab_size,
                            mask_prob=0.5, generator=torch.Generator().manual_seed(0))
    selected = labels != IGNORE
    special = torch.isin(ids, torch.tensor(plm.tokenizer.all_special_ids))
    values = torch.from_numpy(np.asarray(tokens.values[rows.numpy()])[:, :ids.shape[1]])
    assert selected.any() and not (selected & special).any() and not (selected & ~mask.bool()).any()
    if scope == "values":
        assert not (selected & ~values).any()
    else:  # BERT's rule: field names and ":" are candidates too
        assert (selected & ~values).any() and (selected & values).any()


def test_ptab_mlm_loss_equals_a_manual_cross_entropy(ptab_tokens):
    from ctrbench_textbaselines.ptab import mlm_loss

    data, plm, tokens = ptab_tokens
    ids, mask = tokens.table.gather(torch.arange(8), trim=True)
    corrupted, labels = mask_tokens(ids, mask.bool(), mask_token_id=plm.mask_token_id, vocab_size=plm.vocab_size,
                                    mask_prob=0.3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = plm.mlm_logits(corrupted, mask)  # the whole *ForMaskedLM forward
        total, n = 0.0, 0
        for b, t in zip(*torch.nonzero(labels != IGNORE, as_tuple=True), strict=True):
            total += -torch.log_softmax(logits[b, t], dim=-1)[labels[b, t]].item()
            n += 1
        assert n > 0
        assert mlm_loss(plm, corrupted, mask, labels).item() == pytest.approx(total / n, rel=1e-5)


# -- CTRL -----------------------------------------------------------------------------------------------------

def _aligner(ctx, **kw):
    from ctrbench_textbaselines.common import row_tokens
    from ctrbench_textbaselines.ctrl import CTRLAligner

    plm = ctx.build_plm()
    ctr = ctx.build_ctr()
    with torch.no_grad():
        ctr.embedding.weight.normal_(0.0, 1.0)
    return CTRLAligner(ctr, plm, row_tokens(ctx, plm, 32), proj_dim=8, temperature=0.1, **kw)


def test_ctrl_info_nce_equals_a_direct_loop(tmp_path):
    ctx = _ctx(tmp_path, "ctrl")
    aligner = _aligner(ctx).eval()
    batch = _batch(ctx, list(range(0, 24)))
    with torch.no_grad():
        z_tab, z_text = aligner.representations(batch)
        loss = aligner.loss(batch).item()
    cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    n, total = len(z_tab), 0.0
    for i in range(n):  # tabular → text and text → tabular, in-batch negatives
        row = [math.exp(cos(z_tab[i], z_text[j]) / 0.1) for j in range(n)]
        col = [math.exp(cos(z_tab[j], z_text[i]) / 0.1) for j in range(n)]
        total += -math.log(row[i] / sum(row)) - math.log(col[i] / sum(col))
    assert loss == pytest.approx(total / (2 * n), rel=1e-5)


def test_ctrl_alignment_gradient_reaches_the_backbone_heads_and_plm_but_not_the_ctr_head(tmp_path):
    ctx = _ctx(tmp_path, "ctrl")
    aligner = _aligner(ctx).train()
    batch = _batch(ctx, list(range(0, 32)))
    aligner.loss(batch).backward()
    ctr = aligner.ctr
    used = (batch.x + ctr.embedding.offsets).unique()
    assert (ctr.embedding.weight.grad[used].abs().sum(1) > 0).all()
    unused = torch.ones(len(ctr.embedding.weight), dtype=torch.bool)
    unused[used] = False
    assert (ctr.embedding.weight.grad[unused] == 0).all()  # only the rows the batch looks up
    for name, p in ctr.named_parameters():
        if name.startswith("output."):  # the CTR prediction head is not part of the alignment
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    for head in (aligner.ctr_proj, aligner.text_proj):
        assert head.weight.grad.abs().sum() > 0
    assert aligner.plm.model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0  # the PLM is tuned too


def test_ctrl_frozen_plm_gets_no_update(tmp_path, monkeypatch):
    from ctrbench_textbaselines.ctrl import align

    ctx = _ctx(tmp_path, "ctrl")
    plm = ctx.build_plm()
    before = {k: v.clone() for k, v in plm.state_dict().items()}
    monkeypatch.setattr(ctx, "build_plm", lambda: plm)
    align(ctx, CTRLConfig(max_length=24, align_epochs=1, align_batch_size=32, align_plm_lr=0.0), tmp_path)
    assert all(torch.equal(before[k], v) for k, v in plm.state_dict().items())
    assert not any(p.requires_grad for p in plm.parameters())


def test_ctrl_serves_exactly_the_backbone_class_with_the_aligned_weights(tmp_path):
    from ctrbench_textbaselines.ctrl import create

    ctx = _ctx(tmp_path, "ctrl")
    fitted = []
    real_fit = ctx.trainer.fit

    def spy(model, data, **kw):
        fitted.append((model, {k: v.clone() for k, v in model.state_dict().items()}))
        return real_fit(model, data, **kw)

    ctx.trainer.fit = spy
    preds = create(max_length=24, align_epochs=2, align_batch_size=32, proj_dim=8).run(ctx)
    (model, at_start), = fitted
    assert type(model) is DNN
    (stage,) = tmp_path.glob("ctrl-align-*")
    aligned = torch.load(stage / "ctr.pt", weights_only=True)
    assert at_start.keys() == aligned.keys() and all(torch.equal(at_start[k], aligned[k]) for k in aligned)
    fresh = ctx.build_ctr().state_dict()
    assert not torch.equal(fresh["embedding.weight"], aligned["embedding.weight"])  # the stage moved it
    assert preds.n_params == sum(p.numel() for p in model.parameters())  # no PLM, no heads served
    assert preds.extra["align_final_loss"] > 0


# -- the conformance kit and an end-to-end run ---------------------------------------------------------------

@pytest.mark.parametrize(("name", "config"), [
    ("ctr-bert", {"max_length": 16, "fusion_hidden": 8, "teacher": "random-bert", "teacher_max_length": 24}),
    ("ptab", {"max_length": 24, "pretrain_epochs": 1, "pretrain_batch_size": 64, "head_hidden": 8,
              "mask_scope": "values"}),
    ("ctrl", {"max_length": 24, "align_epochs": 1, "align_batch_size": 32, "proj_dim": 8}),
])
def test_passes_the_method_conformance_kit(name, config):
    entry = load_plugins().registry("methods").get(name)
    check_method(entry.factory, config=config, needs=entry.metadata["needs"], name=name)


def _kit_dataset_plugin() -> types.ModuleType:
    class KitText:
        def fingerprint(self) -> str:
            return "kit-text-300"

        def load(self, cache_dir):
            return synthetic_data()

    mod = types.ModuleType("kit_text_plugin")
    mod.ctrbench_register_datasets = hookimpl(
        lambda register: register("kit-text", KitText, provides=Provides(history=True, item_text=True)))
    return mod


SUITE = """
schema_version: 1
name: tb-e2e
analysis: overall
datasets: [kit-text]
seeds: [1]
defaults:
  ctr: {name: dnn, embed_dim: 4, hidden_units: [8]}
  plm: random-bert
  train: {epochs: 1, batch_size: 64}
variants:
  CTR-BERT: {method: {name: ctr-bert, max_length: 16, fusion_hidden: 8}}
  PTab: {method: {name: ptab, max_length: 24, pretrain_epochs: 1, pretrain_batch_size: 64, head_hidden: 8}}
  CTRL: {method: {name: ctrl, max_length: 24, align_epochs: 1, align_batch_size: 32, proj_dim: 8}}
baseline: {variant: CTRL}
"""


def test_end_to_end_run_stores_predictions_for_every_baseline(tmp_path, monkeypatch):
    from ctrbench.store import Store

    monkeypatch.setattr(cli, "load_plugins", lambda: load_plugins(extra=[("kit-text", _kit_dataset_plugin())]))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(textwrap.dedent(SUITE))
    assert cli.main(["run", "s.yaml", "--threads", "1", "--workers", "1"]) == 0
    results = {r.spec.labels["variant"]: r.result for r in Store(tmp_path / "runs").runs("tb-e2e")}
    assert set(results) == {"CTR-BERT", "PTab", "CTRL"}
    for name, result in results.items():
        assert result.ok, (name, result.error)
        assert 0.0 <= result.metrics["test_auc"] <= 1.0 and np.isfinite(result.metrics["test_logloss"])
    assert "mf_final_loss" in results["PTab"].metrics and "align_final_loss" in results["CTRL"].metrics
    assert results["CTRL"].n_params < results["CTR-BERT"].n_params
