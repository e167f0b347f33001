"""``train.cpu_amp``: bf16 autocast on the CPU is opt-in, reaches the training steps (scoring stays float32), keeps
float32 master weights, and keys cached stages apart from their float32 twins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctrbench.context import RunContext
from ctrbench.engine.loop import Engine
from ctrbench.plugins import load_plugins
from ctrbench.spec import ComponentRef, RunSpec
from ctrbench.stats import auc
from ctrbench.suite import SuiteError, load_suite
from ctrbench.trainer import TrainConfig, Trainer
from ctrbench_ctr.dnn import DNN

CPU = torch.device("cpu")


@pytest.mark.parametrize(("amp", "cpu_amp", "expected"), [
    (True, False, None), (True, True, torch.bfloat16), (False, True, None), (False, False, None)])
def test_cpu_autocast_dtype_is_opt_in(amp, cpu_amp, expected):
    assert Engine(CPU, amp=amp, cpu_amp=cpu_amp).amp_dtype() is expected


def _fit(data, cpu_amp: bool, seen: list | None = None):
    torch.manual_seed(0)
    model = DNN(data.fields, embed_dim=8, hidden_units=[32, 16])
    if seen is not None:  # what autocast looks like inside a training step
        forward = model.forward

        def spy(*args, **kwargs):
            out = forward(*args, **kwargs)
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), out.dtype))
            return out
        model.forward = spy
    trainer = Trainer(TrainConfig(epochs=3, batch_size=128, lr=0.01, cpu_amp=cpu_amp), CPU, seed=0)
    trainer.fit(model, data)
    return model, trainer


def test_training_steps_run_in_bf16_with_float32_weights(tiny_data):
    seen: list = []
    model, trainer = _fit(tiny_data, cpu_amp=True, seen=seen)
    training = seen[:10]  # the first calls are training steps (validation comes after the epoch)
    assert all(enabled and dtype is torch.bfloat16 for enabled, dtype, _ in training)
    assert any(out is torch.bfloat16 for _, _, out in training)  # the MLP's matmuls ran in bf16
    assert all(p.dtype is torch.float32 for p in model.parameters())
    with trainer.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") is torch.bfloat16


def test_scoring_is_float32_after_bf16_training_so_scores_do_not_tie(tiny_data):
    """Training under bf16, scoring not: the probabilities are the float32 model's, computed here by hand, and
    have (almost) as many distinct values as rows; the bf16 forward pass would tie many of them."""
    model, trainer = _fit(tiny_data, cpu_amp=True)
    model.eval()
    rows = torch.as_tensor(np.asarray(tiny_data.splits["test"]), dtype=torch.long)
    batch = trainer.device_data(tiny_data).batch(rows)
    with torch.no_grad():
        reference = torch.sigmoid(model(batch)).double().numpy()  # float32, no autocast
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = torch.sigmoid(model(batch).float()).numpy()
    p = trainer.predict(model, tiny_data, "test")
    np.testing.assert_allclose(p, reference, rtol=1e-6, atol=1e-7)
    assert len(np.unique(p)) >= 0.95 * len(p) > len(np.unique(rounded))


def test_default_cpu_steps_stay_float32(tiny_data):
    seen: list = []
    _fit(tiny_data, cpu_amp=False, seen=seen)
    assert seen and not any(enabled for enabled, _, _ in seen)
    assert all(out is torch.float32 for _, _, out in seen)


def test_bf16_training_learns_what_float32_learns(tiny_data):
    y = tiny_data.y[tiny_data.splits["test"]]
    aucs = {}
    for cpu_amp in (False, True):
        model, trainer = _fit(tiny_data, cpu_amp=cpu_amp)
        p = trainer.predict(model, tiny_data, "test")
        assert np.isfinite(p).all()
        aucs[cpu_amp] = auc(y, p)
    assert aucs[False] > 0.6  # the DNN learns the planted signal (FM reaches 0.7, test_trainer.py)
    assert abs(aucs[True] - aucs[False]) < 0.02, aucs


def test_cpu_amp_stages_are_keyed_apart(tiny_data, tmp_path):
    spec = RunSpec("t", ComponentRef("tiny"), ComponentRef("ctr"), ComponentRef("fm"), None, {}, 0)
    folders = {}
    for cpu_amp in (False, True):
        trainer = Trainer(TrainConfig(cpu_amp=cpu_amp), CPU)
        ctx = RunContext(spec, tiny_data, load_plugins(), trainer, CPU, trainer.reporter, tmp_path)
        folders[cpu_amp] = ctx.stage("probe", {"x": 1}, lambda d, flag=cpu_amp: (d / "out.txt").write_text(str(flag)))
    assert folders[False] != folders[True]
    assert (folders[False] / "out.txt").read_text() == "False" and (folders[True] / "out.txt").read_text() == "True"
    # float32 keys are what they were before the option existed: name + hash of the caller's config only
    from ctrbench.spec import content_hash
    assert folders[False].name == f"probe-{content_hash({'x': 1})}"


def test_cpu_amp_must_be_a_boolean_at_validate(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("schema_version: 1\nname: s\ndatasets: [synthetic]\ndefaults: {method: ctr, ctr: fm, "
                     "train: {cpu_amp: 'yes'}}\n")
    with pytest.raises(SuiteError, match="cpu_amp"):
        load_suite(suite)
