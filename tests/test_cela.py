"""CELA: the losses against direct computations, the frozen ID table, the item-level caches, stage reuse."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ctrbench.context import RunContext
from ctrbench.plugins import load_plugins
from ctrbench.protocols import MethodNeeds
from ctrbench.results import stage_seconds
from ctrbench.spec import ComponentRef, RunSpec
from ctrbench.testing import check_method, synthetic_data
from ctrbench.trainer import DeviceData, NullReporter, TrainConfig, Trainer
from ctrbench_cela import dap, roma
from ctrbench_cela.config import CELAConfig
from ctrbench_cela.items import align_field_names, item_feature_index, item_tokens, popular_items, train_popularity
from ctrbench_cela.method import CELA
from ctrbench_cela.mf2 import MF2Model
from ctrbench_cela.plugin import cela

PLUGINS = load_plugins()
QUICK = {"dap_epochs": 1, "roma_epochs": 1, "max_length": 32, "dap_batch_size": 8, "roma_batch_size": 8,
         "rounds": 1}
TRAIN = {"epochs": 1, "batch_size": 64, "max_samples": 128}


@pytest.fixture(scope="module")
def data():
    return synthetic_data(num_samples=400, seed=3)


def _ctx(stages: Path, data, method: dict | None = None, seed: int = 0, plm: str = "random-bert") -> RunContext:
    spec = RunSpec("cela-test", ComponentRef(data.name), ComponentRef("cela", dict(method or {})),
                   ComponentRef("dnn", {"embed_dim": 4, "hidden_units": [8]}), ComponentRef(plm),
                   dict(TRAIN), seed)
    trainer = Trainer(TrainConfig.from_dict(spec.train), torch.device("cpu"), NullReporter(), run_name="t", seed=seed)
    return RunContext(spec, data, PLUGINS, trainer, torch.device("cpu"), trainer.reporter, stages)


def _plm():
    return PLUGINS.registry("plm").get("random-bert").create()


# -- losses against direct computations -------------------------------------------------------------------------

def _reference_roma(e_t: np.ndarray, e_n: np.ndarray, tau: float, cosine: bool) -> float:
    """Eq. 10 + Eq. 11 written out with loops."""
    if cosine:
        e_t = e_t / np.linalg.norm(e_t, axis=1, keepdims=True)
        e_n = e_n / np.linalg.norm(e_n, axis=1, keepdims=True)
    n = len(e_t)
    l_tn = l_nt = 0.0
    for i in range(n):
        num_tn = math.exp(float(e_t[i] @ e_n[i]) / tau)
        den_tn = sum(math.exp(float(e_t[i] @ e_n[k]) / tau) for k in range(n))
        num_nt = math.exp(float(e_n[i] @ e_t[i]) / tau)
        den_nt = sum(math.exp(float(e_n[i] @ e_t[k]) / tau) for k in range(n))
        l_tn -= math.log(num_tn / den_tn)
        l_nt -= math.log(num_nt / den_nt)
    return l_tn / n + l_nt / n


@pytest.mark.parametrize("similarity,tau", [("inner", 1.0), ("inner", 0.5), ("cosine", 0.2)])
def test_roma_loss_equals_eq_10_plus_eq_11(similarity, tau):
    g = torch.Generator().manual_seed(0)
    e_t, e_n = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(7, 5, generator=g, dtype=torch.float64)
    got = roma.roma_loss(e_t, e_n, similarity, tau).item()
    assert got == pytest.approx(_reference_roma(e_t.numpy(), e_n.numpy(), tau, similarity == "cosine"), rel=1e-10)


def _reference_simcse(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    """Eq. 5 (mean over the batch) with loops and cosine similarity."""
    cos = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))  # noqa: E731
    n = len(z1)
    return -sum(math.log(math.exp(cos(z1[i], z2[i]) / tau) / sum(math.exp(cos(z1[i], z2[j]) / tau)
                                                               for j in range(n))) for i in range(n)) / n


def test_dap_simcse_term_equals_reference_and_positives_differ_only_by_dropout(data, tmp_path, monkeypatch):
    plm = _plm()
    tokens = item_tokens(_ctx(tmp_path, data), plm, 32)
    ids, mask = tokens.gather(torch.arange(1, 9), "cpu", trim=True)
    seen = []
    real = plm.encode

    def spy(i, m, *a, **kw):
        out = real(i, m, *a, **kw)
        seen.append((i.clone(), out.detach().clone()))
        return out

    monkeypatch.setattr(plm, "encode", spy)
    cfg = CELAConfig(mlm=True, simcse=True, alpha=1.0, tau1=0.05)
    plm.train()
    torch.manual_seed(0)
    loss = dap.dap_loss(plm, ids, mask, cfg, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    (cse_ids, cse_out) = next((i, o) for i, o in seen if i.shape[0] == 2 * len(ids))
    n = len(ids)
    assert torch.equal(cse_ids[:n], ids) and torch.equal(cse_ids[n:], ids)  # same, uncorrupted text twice
    z = cse_out[:, 0]
    assert not torch.allclose(z[:n], z[n:])  # dropout makes the two views differ ...
    plm.eval()
    seen.clear()
    term = dap.dap_loss(plm, ids, mask, CELAConfig(mlm=False, simcse=True, tau1=0.05), torch.Generator())
    z = seen[0][1][:, 0]
    assert torch.equal(z[:n], z[n:])  # ... and nothing else does
    ref = _reference_simcse(z[:n].double().numpy(), z[n:].double().numpy(), 0.05)
    assert term.item() == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize("weighting,alpha,w_mlm,w_cse", [("paper", 0.5, 1.0, 0.5), ("authors_code", 0.5, 0.1, 1.0)])
def test_dap_weighting(data, tmp_path, weighting, alpha, w_mlm, w_cse):
    plm = _plm().eval()  # dropout off: each term is deterministic
    tokens = item_tokens(_ctx(tmp_path, data), plm, 32)
    ids, mask = tokens.gather(torch.arange(1, 13), "cpu", trim=True)
    both = dap.dap_loss(plm, ids, mask, CELAConfig(dap_weighting=weighting, alpha=alpha, mask_prob=0.5),
                        torch.Generator().manual_seed(4))
    mlm = dap.mlm_loss(plm, ids, mask, torch.Generator().manual_seed(4), 0.5)
    cse = dap.dap_loss(plm, ids, mask, CELAConfig(mlm=False, tau1=0.05), torch.Generator())
    assert both.item() == pytest.approx(w_mlm * mlm.item() + w_cse * cse.item(), rel=1e-5)


# -- ROMA: frozen ID table, popular items ------------------------------------------------------------------------

def test_id_item_table_is_the_concatenated_item_rows(data):
    torch.manual_seed(0)
    ctr = PLUGINS.registry("ctr").get("dnn").create(fields=data.fields, embed_dim=4, hidden_units=[8])
    fields = align_field_names(data, "item_side")
    assert fields == ["item_id", "genre"]  # the synthetic genre is constant per item; user and age are not
    index = item_feature_index(data, fields)
    table = roma.id_item_table(ctr, index, fields)
    for i in (1, 5, 9):
        row = data.X[np.flatnonzero(data.X[:, 1] == i)[0]]
        want = torch.cat([ctr.embedding.table("item_id")[i], ctr.embedding.table("genre")[row[2]]])
        assert torch.equal(table[i], want)


def test_roma_trains_plm_and_head_and_leaves_the_id_table_bit_identical(data, tmp_path):
    ctx = _ctx(tmp_path, data)
    torch.manual_seed(0)
    ctr = PLUGINS.registry("ctr").get("dnn").create(fields=data.fields, embed_dim=4, hidden_units=[8])
    before = ctr.embedding.weight.detach().clone()
    plm = _plm()
    plm_before = {k: v.clone() for k, v in plm.state_dict().items()}
    fields = align_field_names(data, "item_side")
    e_n = roma.id_item_table(ctr, item_feature_index(data, fields), fields)
    head = roma.ProjectionHead(plm.hidden_size, (16,), e_n.shape[1])
    head_before = [p.detach().clone() for p in head.parameters()]
    aligner = roma.Aligner(plm, head, item_tokens(ctx, plm, 32))
    cfg = CELAConfig(roma_epochs=2, roma_batch_size=4, roma_lr=1e-3)
    info = roma.align(ctx, aligner, e_n, popular_items(data, 1.0), cfg)
    assert info["plm_trained"] and info["steps"] > 0
    assert torch.equal(ctr.embedding.weight, before)  # bit-identical: Eq. 8 reads a detached copy
    assert ctr.embedding.weight.grad is None
    assert any(not torch.equal(v, plm.state_dict()[k]) for k, v in plm_before.items())
    assert any(not torch.equal(a, b) for a, b in zip(head_before, head.parameters(), strict=True))


def test_popular_items_are_the_top_fraction_by_training_rows(data):
    pop = train_popularity(data)
    assert pop.sum() == len(data.splits["train"])
    top = popular_items(data, 0.4)
    k = int(np.floor(0.4 * (len(pop) - 1)))
    assert len(top) == k
    rest = np.setdiff1d(np.arange(1, len(pop)), top.numpy())
    assert pop[top.numpy()].min() >= pop[rest].max()
    assert torch.equal(popular_items(data, 1.0), torch.arange(1, len(pop)))


def test_popular_item_alignment_touches_only_those_items(data, tmp_path):
    ctx = _ctx(tmp_path, data)
    plm = _plm()
    e_n = torch.randn(len(train_popularity(data)), 8)
    head = roma.ProjectionHead(plm.hidden_size, (16,), 8)
    aligner = roma.Aligner(plm, head, item_tokens(ctx, plm, 32))
    touched: list[torch.Tensor] = []
    real = aligner.text
    # training steps run with gradients; the retrieval diagnostic scores every item without them
    aligner.text = lambda idx: (touched.append(idx.clone()) if torch.is_grad_enabled() else None, real(idx))[1]
    top = popular_items(data, 0.6)
    info = roma.align(ctx, aligner, e_n, top, CELAConfig(roma_epochs=2, roma_batch_size=4))
    seen = torch.cat(touched).unique()
    assert torch.equal(seen, top)  # every popular item is aligned, and nothing else
    assert info["retrieval_after"]["items"] == len(e_n) - 1 > len(top)


def test_roma_without_plm_trains_only_the_head(data, tmp_path):
    ctx = _ctx(tmp_path, data)
    plm = _plm()
    raw = roma.encode_items(plm, item_tokens(ctx, plm, 32), ctx.device)
    plm_before = {k: v.clone() for k, v in plm.state_dict().items()}
    head = roma.ProjectionHead(plm.hidden_size, (16,), 8)
    aligner = roma.Aligner(plm, head, item_tokens(ctx, plm, 32), raw)
    calls = []
    plm.encode = lambda *a, **k: calls.append(1)  # the PLM must not run
    info = roma.align(ctx, aligner, torch.randn(len(raw), 8), popular_items(data, 1.0),
                      CELAConfig(roma_plm=False, roma_epochs=1, roma_batch_size=4))
    assert not info["plm_trained"] and not calls
    assert all(torch.equal(v, plm.state_dict()[k]) for k, v in plm_before.items())


def _reference_ranks(e_t: np.ndarray, e_n: np.ndarray) -> list[int]:
    """0-based rank of each item's own ID row among all rows by inner product, ties counted against it."""
    ranks = []
    for i in range(len(e_t)):
        own = float(e_t[i] @ e_n[i])
        ranks.append(sum(1 for j in range(len(e_n)) if j != i and float(e_t[i] @ e_n[j]) >= own))
    return ranks


def test_retrieval_diagnostic_equals_a_direct_ranking_and_sees_a_perfect_alignment(data, tmp_path):
    ctx = _ctx(tmp_path, data)
    plm = _plm()
    tokens = item_tokens(ctx, plm, 32)
    gen = torch.Generator().manual_seed(5)
    raw = torch.randn(len(tokens), 6, generator=gen)
    head = roma.ProjectionHead(6, (), 6)
    with torch.no_grad():  # the head is the identity: e_t = raw
        head.out.weight.copy_(torch.eye(6))
        head.out.bias.zero_()
    aligner = roma.Aligner(plm, head, tokens, raw)
    items = torch.arange(1, len(tokens))
    e_n = torch.randn(len(tokens), 6, generator=gen)  # unrelated to the text side
    got = roma.retrieval(aligner, e_n, items, k=3)
    ranks = _reference_ranks(raw[1:].numpy(), e_n[1:].numpy())
    assert got["recall@3"] == pytest.approx(np.mean([r < 3 for r in ranks]))
    assert got["mrr"] == pytest.approx(np.mean([1 / (r + 1) for r in ranks]), rel=1e-6)
    assert got["items"] == len(items) and got["chance@3"] == pytest.approx(3 / len(items))
    perfect = roma.retrieval(aligner, raw, items, similarity="cosine", k=1)  # ID rows = the texts themselves
    assert perfect["recall@1"] == 1.0 and perfect["mrr"] == 1.0


# -- the text table and MF² ---------------------------------------------------------------------------------------

def test_text_table_encodes_each_item_exactly_once(data, tmp_path, monkeypatch):
    ctx = _ctx(tmp_path, data)
    plm = _plm()
    tokens = item_tokens(ctx, plm, 32)
    rows: list[torch.Tensor] = []
    real = plm.encode
    monkeypatch.setattr(plm, "encode", lambda i, m, *a, **k: (rows.append(i.clone()), real(i, m, *a, **k))[1])
    table = roma.encode_items(plm, tokens, ctx.device, batch_size=4)
    assert sum(len(r) for r in rows) == len(tokens) - 1  # items 1..V-1, once each
    assert table.shape == (len(tokens), plm.hidden_size) and torch.equal(table[0], torch.zeros(plm.hidden_size))
    ids, mask = tokens.gather(torch.tensor([3]), "cpu", trim=True)
    torch.testing.assert_close(table[3], real(ids, mask)[0, 0], rtol=1e-5, atol=1e-5)


def test_mf2_fields_follow_eq_13(data):
    torch.manual_seed(0)
    ctr = PLUGINS.registry("ctr").get("dnn").create(fields=[*data.fields, *data.sequence_fields], embed_dim=4,
                                                    hidden_units=[8], num_extra_fields=2)
    table = torch.randn(16, 6)
    model = MF2Model(ctr, table, data.field_index("item_id"), "history", (5,))
    batch = DeviceData(data, torch.device("cpu")).batch(torch.arange(200, 240))
    got = model.text_fields(batch)
    assert got.shape == (40, 2, 4)
    for b in range(40):
        hist = [int(h) for h in batch.sequences["history"][b] if h != 0]
        mean = table[hist].mean(0) if hist else torch.zeros(6)
        torch.testing.assert_close(got[b, 0], model.item_mlp(table[batch.x[b, 1]]))
        torch.testing.assert_close(got[b, 1], model.history_mlp(mean))
    assert "table" not in dict(model.named_parameters())  # frozen: a buffer, not counted as a parameter


def test_check_method_passes():
    check_method(cela, config={**QUICK, "rounds": 2}, needs=MethodNeeds(plm=("masked_lm",), ctr=True,
                                                                        item_text=True), name="cela")


# -- the method end to end: stage reuse, no PLM at CTR time ----------------------------------------------------------

def _counting(ctx: RunContext, computed: list[str]) -> RunContext:
    real = ctx.stage

    def stage(name, config, fn):
        return real(name, config, lambda out: (computed.append(name), fn(out))[1])

    ctx.stage = stage  # type: ignore[method-assign]
    return ctx


def test_end_to_end_stages_are_reused_and_mf2_never_runs_the_plm(data, tmp_path, monkeypatch):
    computed: list[str] = []
    cfg = {**QUICK, "rounds": 2}
    preds = CELA(CELAConfig(**cfg)).run(_counting(_ctx(tmp_path, data, cfg), computed))
    assert computed == ["cela-id", "text-tokens", "cela-dap", "cela-roma", "cela-mf2", "cela-roma", "cela-mf2"]
    assert preds.test.shape == (len(data.splits["test"]),) and np.all((preds.test > 0) & (preds.test < 1))
    assert preds.extra["rounds"] == 2 and preds.extra["mf2_params"] == preds.trainable_params
    assert preds.n_params < preds.extra["plm_params"]  # the served model holds no PLM
    # train_seconds is MF² alone; the stages are reported apart, so a board's Total s counts each once
    stages = preds.extra["dap_seconds"] + preds.extra["roma_seconds"] + preds.extra["id_seconds"]
    assert stage_seconds(preds.extra) == pytest.approx(stages) and preds.extra["dap_seconds"] > 0
    assert 0 < preds.train_seconds and "mf2_seconds" not in preds.extra

    # a third round: only its ROMA and MF² are new; everything else comes from the cache, without the PLM at
    # CTR time (MaskedLM.encode raises from here on, except inside the new ROMA stage)
    from ctrbench_plm.masked_lm import MaskedLM

    computed.clear()
    cfg3 = {**cfg, "rounds": 3}
    CELA(CELAConfig(**cfg3)).run(_counting(_ctx(tmp_path, data, cfg3), computed))
    assert computed == ["cela-roma", "cela-mf2"]

    def no_plm(*a, **k):
        raise AssertionError("the PLM ran outside DAP/ROMA/table encoding")

    monkeypatch.setattr(MaskedLM, "encode", no_plm)
    computed.clear()
    again = CELA(CELAConfig(**cfg3)).run(_counting(_ctx(tmp_path, data, cfg3), computed))
    assert computed == []  # a second run of every stage recomputes nothing
    assert again.test.shape == preds.test.shape and np.isfinite(again.test).all()


@pytest.mark.parametrize("overrides,stages", [
    ({"dap": False, "roma": False}, ["text-tokens", "cela-text", "cela-mf2"]),  # "DIN + PLM"
    ({"roma_plm": False}, ["cela-id", "text-tokens", "cela-dap", "cela-text", "cela-roma", "cela-mf2"]),
    ({"mf2_table": "id"}, ["cela-id", "cela-mf2"]),  # "MF² w/o text"
])
def test_ablations_run_the_stages_they_need(data, tmp_path, overrides, stages):
    computed: list[str] = []
    cfg = {**QUICK, **overrides}
    preds = CELA(CELAConfig(**cfg)).run(_counting(_ctx(tmp_path, data, cfg), computed))
    assert computed == stages
    assert np.isfinite(preds.valid).all() and np.isfinite(preds.test).all()


def test_config_rejects_inconsistent_knobs():
    with pytest.raises(ValueError, match="dap_weighting"):
        CELAConfig(dap_weighting="both")
    with pytest.raises(ValueError, match="mlm or simcse"):
        CELAConfig(mlm=False, simcse=False)
    with pytest.raises(ValueError, match="align_top"):
        CELAConfig(align_top=0.0)
    with pytest.raises(ValueError, match="projected"):
        CELAConfig(roma=False, text_table="projected")
    assert CELAConfig(roma_plm=False).table_kind == "projected" and CELAConfig().table_kind == "raw"
