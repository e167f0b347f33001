"""CELA with a causal LM (Fig. 4's OPT end): the CLM loss against the model's own logits, pooling that ignores
padding, LoRA adapters as the only trained and stored weights, and the method end to end with cached stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_cela import PLUGINS, QUICK
from test_cela import _ctx as cela_ctx

from ctrbench.protocols import MethodNeeds
from ctrbench.testing import check_method, synthetic_data
from ctrbench_cela import dap
from ctrbench_cela.config import CELAConfig
from ctrbench_cela.encoder import CausalTextEncoder, wrap
from ctrbench_cela.method import CELA
from ctrbench_cela.plugin import cela


@pytest.fixture(scope="module")
def data():
    return synthetic_data(num_samples=400, seed=3)


def _encoder(**cfg) -> CausalTextEncoder:
    lm = PLUGINS.registry("plm").get("random-llama").create()
    enc = wrap(lm, CELAConfig(**cfg), seed=0)
    assert isinstance(enc, CausalTextEncoder)
    return enc


def _ctx(stages, data, method: dict):
    return cela_ctx(stages, data, method, plm="random-llama")


def test_clm_loss_equals_next_token_cross_entropy_of_the_models_own_logits():
    enc = _encoder()
    ids, mask = enc.tokenize(["the first item text is longer than the other", "a short one"], max_length=32)
    assert (mask[1, 0] == 0) and mask[1, -1] == 1  # left padded
    with torch.no_grad():
        got = float(enc.lm_loss(ids, mask))
        # reference: the full causal-LM logits of each text alone (no padding), summed token by token
        terms = []
        for row in range(len(ids)):
            real = ids[row][mask[row].bool()][None]
            logits = enc.lm.base_model()(input_ids=real).logits[0].double()
            logp = torch.log_softmax(logits, -1)
            terms += [-float(logp[t, real[0, t + 1]]) for t in range(real.shape[1] - 1)]
    assert got == pytest.approx(float(np.mean(terms)), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooled_embedding_ignores_the_batchs_padding(pooling):
    enc = _encoder(causal_pooling=pooling).eval()
    texts = ["a short one", "the first item text is much longer than the other one"]
    with torch.no_grad():
        ids, mask = enc.tokenize(texts, max_length=32)
        both = enc.pooled(enc.encode(ids, mask), mask)
        ids1, mask1 = enc.tokenize(texts[:1], max_length=32)
        alone = enc.pooled(enc.encode(ids1, mask1), mask1)
        hidden = enc.encode(ids1, mask1)[0]
    expected = hidden.mean(0) if pooling == "mean" else hidden[-1]
    assert torch.allclose(alone[0], expected, atol=1e-6)
    assert torch.allclose(both[0], alone[0], atol=1e-5)  # padded in a batch = encoded alone


def test_dap_on_a_causal_lm_trains_only_the_adapters_and_stores_only_them(data, tmp_path):
    cfg = CELAConfig(**{**QUICK, "simcse": True})
    ctx = _ctx(tmp_path, data, QUICK)
    method = CELA(cfg)
    enc = method.build_plm(ctx)
    base_before = {n: p.detach().clone() for n, p in enc.named_parameters() if "lora_" not in n}
    lora_before = {n: p.detach().clone() for n, p in enc.named_parameters() if "lora_" in n}
    assert lora_before and all(not p.requires_grad for n, p in enc.named_parameters() if "lora_" not in n)
    from ctrbench_cela.items import item_tokens
    tokens = item_tokens(ctx, enc, 32)
    out = tmp_path / "dap"
    out.mkdir()
    dap.pretrain(ctx, enc, tokens, cfg, out)
    after = dict(enc.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in base_before.items())  # base weights bit-identical
    assert any(not torch.equal(after[n], p) for n, p in lora_before.items())  # the adapters moved
    saved = torch.load(out / "plm.pt", weights_only=True)
    assert set(saved) == set(lora_before)  # only the adapters are stored
    fresh = method.load_plm(ctx, type("S", (), {"dir": out})())
    assert all(torch.equal(dict(fresh.named_parameters())[n], after[n].detach()) for n in saved)


def test_cela_end_to_end_on_a_causal_lm_reuses_its_stages(data, tmp_path):
    computed: list[str] = []
    ctx = _ctx(tmp_path, data, QUICK)
    real = ctx.stage
    ctx.stage = lambda name, key, fn: real(name, key, lambda out: (computed.append(name), fn(out))[1])
    preds = CELA(CELAConfig(**QUICK)).run(ctx)
    assert computed == ["cela-id", "text-tokens", "cela-dap", "cela-roma", "cela-mf2"]
    assert np.isfinite(preds.test).all() and preds.test.shape == (len(data.splits["test"]),)
    lora = sum(p.numel() for n, p in _encoder().named_parameters() if "lora_" in n)
    assert preds.extra["roma_params"] < lora + 10_000  # adapters + head, not the base model
    assert preds.n_params < preds.extra["plm_params"]  # the served model holds no PLM
    # a different adapter rank is a different DAP stage; the ID model is shared
    computed.clear()
    ctx2 = _ctx(tmp_path, data, {**QUICK, "lora_r": 4})
    real2 = ctx2.stage
    ctx2.stage = lambda name, key, fn: real2(name, key, lambda out: (computed.append(name), fn(out))[1])
    CELA(CELAConfig(**QUICK, lora_r=4)).run(ctx2)
    assert computed == ["cela-dap", "cela-roma", "cela-mf2"]


def _dap_gradients(checkpointing: str, monkeypatch) -> tuple[float, dict[str, torch.Tensor], int]:
    """DAP's loss (CLM + SimCSE, LoRA dropout on) and its adapter gradients; how often an MLP block ran forward
    (counted on the class: a recomputation in backward fires no module hooks)."""
    from transformers.models.llama import modeling_llama
    calls = []
    forward = modeling_llama.LlamaMLP.forward
    monkeypatch.setattr(modeling_llama.LlamaMLP, "forward", lambda self, x: (calls.append(1), forward(self, x))[1])
    enc = _encoder(lora_dropout=0.3, gradient_checkpointing=checkpointing).train()
    ids, mask = enc.tokenize(["the first item text is longer than the other one", "a short one", "third text",
                              "x y"], max_length=32)
    torch.manual_seed(5)  # SimCSE's two dropout views draw from the global generator
    loss = dap.dap_loss(enc, ids, mask, CELAConfig(alpha=0.5), torch.Generator().manual_seed(1))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
    return loss.item(), grads, len(calls)


def test_gradient_checkpointing_recomputes_the_layers_and_leaves_the_gradients_bit_identical(monkeypatch):
    """Why it may stay out of every stage key: a stage computed with it equals one computed without."""
    loss_off, grads_off, calls_off = _dap_gradients("off", monkeypatch)
    loss_on, grads_on, calls_on = _dap_gradients("auto", monkeypatch)  # auto = on for a causal LM
    layers = len(_encoder().lm.base_model().get_decoder().layers)
    assert calls_off == 2 * layers  # CLM and SimCSE (both views in one batch): one forward each per layer
    assert calls_on == 4 * layers  # ... and each once more in backward
    assert loss_on == loss_off
    assert grads_off.keys() == grads_on.keys() and len(grads_off) > 0
    assert all(torch.equal(grads_off[n], grads_on[n]) for n in grads_off)
    key = CELAConfig(gradient_checkpointing="off")
    assert key.causal_key() == CELAConfig().causal_key() and key.roma_key() == CELAConfig().roma_key()
    assert key.dap_key() == CELAConfig().dap_key()


def test_gradient_checkpointing_on_a_masked_lm_is_refused_by_name():
    with pytest.raises(ValueError, match="gradient_checkpointing=on applies to a causal-LM PLM"):
        wrap(PLUGINS.registry("plm").get("random-bert").create(), CELAConfig(gradient_checkpointing="on"), seed=0)
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        CELAConfig(gradient_checkpointing="yes")


def test_check_method_passes_on_the_causal_family():
    check_method(cela, config=QUICK, needs=MethodNeeds(plm=("masked_lm", "causal_lm"), ctr=True, item_text=True),
                 family="causal_lm", name="cela")


def test_config_rejects_bad_causal_knobs():
    with pytest.raises(ValueError, match="causal_pooling"):
        CELAConfig(causal_pooling="cls")
    with pytest.raises(ValueError, match="lora_r"):
        CELAConfig(lora_r=0)
