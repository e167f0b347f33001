"""The one training engine: CTR fitting bit-identical to the loop it replaced, schedules, regularisers, phases.

The reference loop below is the pre-engine `Trainer.fit` written out by hand (seeding, batch order, fused AdamW,
clipping, validation AUC with patience and best-weight restore): with separate parameter tensors a `ctr` run gives
the same bytes for a seed; with the default contiguous ones (engine/flat.py), the same model to round-off.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import ctrbench.engine.fused_step as fused_step
from ctrbench.engine import Engine, IndexSource, Phase, ValidationAUC, l2_regularizer, lr_factor, warmup_steps
from ctrbench.errors import RunError
from ctrbench.stats import auc
from ctrbench.trainer import TrainConfig, Trainer
from ctrbench_ctr.dcnv2 import DCNv2
from ctrbench_ctr.dnn import DNN


def reference_fit(model, data, seed, epochs, batch_size, lr, patience, grad_clip=10.0):
    """The training loop as it was before the engine, without any ctrbench helper but the model."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    X = torch.as_tensor(data.X)
    y = torch.as_tensor(data.y.astype(np.float32))
    rows = torch.from_numpy(np.array(data.splits["train"], dtype=np.int64))
    valid = torch.from_numpy(np.array(data.splits["valid"], dtype=np.int64))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0, fused=True)
    params = [p for g in opt.param_groups for p in g["params"]]

    def predict(idx):
        from ctrbench.models.base import Batch

        model.eval()
        with torch.no_grad():
            return torch.sigmoid(model(Batch(X[idx], y[idx], idx, {})).float()).numpy().astype(np.float64)

    from ctrbench.models.base import Batch

    best, best_state, bad = -math.inf, None, 0
    for _ in range(epochs):
        model.train()
        order = rows[torch.randperm(len(rows), generator=gen)]
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = nn.functional.binary_cross_entropy_with_logits(model(Batch(X[idx], y[idx], idx, {})).float(),
                                                                  y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
        v = auc(data.y[data.splits["valid"]], predict(valid))
        if v > best:
            best, bad = v, 0
            best_state = copy.deepcopy({k: t.detach().clone() for k, t in model.state_dict().items()})
        else:
            bad += 1
            if bad >= patience:
                break
    model.load_state_dict(best_state)
    return predict(torch.from_numpy(np.array(data.splits["test"], dtype=np.int64)))


@pytest.mark.parametrize("cls", [DNN, DCNv2])
def test_ctr_fit_is_bit_identical_to_the_reference_loop(tiny_data, cls):
    cfg = {"epochs": 4, "batch_size": 128, "lr": 0.01, "patience": 1}
    torch.manual_seed(7)
    ref_model = cls(tiny_data.fields, embed_dim=8)
    torch.manual_seed(7)
    model = cls(tiny_data.fields, embed_dim=8)
    torch.manual_seed(7)
    flat_model = cls(tiny_data.fields, embed_dim=8)
    expected = reference_fit(ref_model, tiny_data, seed=7, **cfg)
    trainer = Trainer(TrainConfig(**cfg), torch.device("cpu"), seed=7)
    trainer.engine.flat_params = False  # separate tensors, as the reference loop has them
    trainer.fit(model, tiny_data)
    got = trainer.predict(model, tiny_data, "test")
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    # the default, contiguous parameters (engine/flat.py): the same model to round-off
    flat_trainer = Trainer(TrainConfig(**cfg), torch.device("cpu"), seed=7)
    assert flat_trainer.fit(flat_model, tiny_data).flat
    np.testing.assert_allclose(flat_trainer.predict(flat_model, tiny_data, "test"), expected, rtol=0, atol=1e-5)


def test_schedule_values_by_hand():
    f = lr_factor("linear", warmup=2, total_steps=10)
    by_hand = [1 / 3, 2 / 3, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0]
    assert [f(s) for s in range(11)] == pytest.approx(by_hand)
    c = lr_factor("cosine", warmup=0, total_steps=4)
    assert [c(s) for s in range(5)] == pytest.approx([1, (1 + math.cos(math.pi / 4)) / 2, 0.5,
                                                      (1 + math.cos(3 * math.pi / 4)) / 2, 0])
    assert lr_factor("constant", warmup=0, total_steps=5)(3) == 1.0
    assert warmup_steps(0.1, 200) == 20 and warmup_steps(7, 200) == 7
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        lr_factor("step", 0, 10)


def test_the_optimizer_follows_the_schedule(tiny_data):
    trainer = Trainer(TrainConfig(epochs=2, batch_size=600, lr=0.1, schedule="linear", warmup=1), torch.device("cpu"))
    model = DNN(tiny_data.fields, embed_dim=4, hidden_units=(8,))
    seen = []
    source = trainer.row_source(tiny_data, trainer.train_rows(tiny_data))  # 2400 rows: 4 batches, 8 steps
    phase = trainer.phase("p", source, lambda b: model(b).float().pow(2).mean(), list(model.parameters()),
                          model=model)
    original = torch.optim.AdamW.step
    kernels = fused_step._KERNELS
    original_kernel = kernels[True]

    def spy(self, *a, **k):
        seen.append(("torch", self.param_groups[0]["lr"]))
        return original(self, *a, **k)

    def kernel_spy(*a, lr, **k):  # the steps after the first call the kernel directly (engine/fused_step.py)
        seen.append(("kernel", lr))
        return original_kernel(*a, lr=lr, **k)

    torch.optim.AdamW.step = spy
    kernels[True] = kernel_spy
    try:
        trainer.engine.run(phase)
    finally:
        torch.optim.AdamW.step = original
        kernels[True] = original_kernel
    expected = [0.1 * lr_factor("linear", 1, 8)(s) for s in range(8)]
    assert [how for how, _ in seen] == ["torch"] + ["kernel"] * 7  # one group: one kernel call a step
    assert [lr for _, lr in seen] == pytest.approx(expected) and seen[0][1] == pytest.approx(0.05)


def test_l2_regularizer_equals_a_hand_sum(tiny_data):
    model = DNN(tiny_data.fields, embed_dim=4, hidden_units=(8,))
    pen = l2_regularizer(model, embedding=0.01, net=0.1)
    emb = model.embedding.weight.pow(2).sum()  # DNN's one table (all fields concatenated)
    net = sum(m.weight.pow(2).sum() for m in model.modules() if isinstance(m, nn.Linear))
    assert emb.item() > 0 and net.item() > 0
    assert pen().item() == pytest.approx((0.005 * emb + 0.05 * net).item(), rel=1e-6)
    assert l2_regularizer(model, 0.0, 0.0) is None


def test_regularizer_changes_training_only_when_set(tiny_data):
    def fit(**reg):
        torch.manual_seed(0)
        model = DNN(tiny_data.fields, embed_dim=4, hidden_units=(8,))
        t = Trainer(TrainConfig(epochs=1, batch_size=256, lr=0.02, **reg), torch.device("cpu"), seed=0)
        t.fit(model, tiny_data)
        return t.predict(model, tiny_data, "test"), model

    base, _ = fit()
    same, _ = fit(embedding_regularizer=0.0)
    reg, model = fit(embedding_regularizer=1.0)
    _, plain = fit()
    assert np.array_equal(base, same) and np.abs(base - reg).max() > 1e-3
    assert model.embedding.weight.norm() < 0.9 * plain.embedding.weight.norm()  # the penalty shrinks the tables


def test_nan_guard_names_run_and_phase(tiny_data):
    engine = Engine(torch.device("cpu"), run_name="m seed 3")
    w = nn.Parameter(torch.ones(2))
    phase = Phase("contrastive", IndexSource(10, 5), lambda idx: w.sum() * float("nan"), [w], epochs=1, lr=0.1)
    with pytest.raises(RunError, match=r"run m seed 3: loss became nan at epoch 1 step 0 of phase 'contrastive'"):
        engine.run(phase)


def test_skipped_batches_take_no_step():
    w = nn.Parameter(torch.zeros(1))
    calls = []

    def loss(idx):
        calls.append(idx.tolist())
        return None if len(calls) % 2 else (w - 1).pow(2).sum()

    report = Engine(torch.device("cpu")).run(Phase("p", IndexSource(8, 2), loss, [w], epochs=1, lr=0.1))
    assert len(calls) == 4 and report.steps == 2 and w.item() != 0.0


def test_index_source_order_is_the_seeded_permutation():
    src = IndexSource(torch.arange(10, 20), 4)
    got = torch.cat(list(src.epoch(torch.Generator().manual_seed(3))))
    expected = torch.arange(10, 20)[torch.randperm(10, generator=torch.Generator().manual_seed(3))]
    assert torch.equal(got, expected) and src.num_batches() == 3


def test_alternating_phases_interleave_and_keep_their_optimizers():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    order = []
    pa = Phase("A", IndexSource(4, 4), lambda i: (order.append("A"), (a - 1).pow(2).sum())[1], [a], epochs=1, lr=0.1)
    pb = Phase("B", IndexSource(4, 2), lambda i: (order.append("B"), (b + 1).pow(2).sum())[1], [b], epochs=1, lr=0.1)
    ra, rb = Engine(torch.device("cpu")).run_phases([pa, pb], rounds=3)
    assert order == ["A", "B", "B"] * 3
    assert (ra.steps, rb.steps, ra.epochs_run, rb.epochs_run) == (3, 6, 3, 3)

    def persistent_adam(target, steps):  # one optimizer for all rounds, as the engine must keep it
        w = nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([w], lr=0.1, weight_decay=0.0)
        for _ in range(steps):
            opt.zero_grad()
            (w - target).pow(2).sum().backward()
            opt.step()
        return w.item()

    assert a.item() == pytest.approx(persistent_adam(1.0, 3), abs=1e-6)
    assert b.item() == pytest.approx(persistent_adam(-1.0, 6), abs=1e-6)


def test_monitor_restores_only_trainable_weights_when_asked():
    model = nn.Linear(2, 1)
    model.bias.requires_grad_(False)
    scores = iter([0.9, 0.1])
    y = np.array([0, 1, 0, 1])
    mon = ValidationAUC(lambda: np.array([0.1, next(scores), 0.2, 0.3]), y, patience=1, trainable_only=True)
    mon.update(model, 1)
    best_w = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
        model.bias.add_(5.0)
    _, stop = mon.update(model, 2)
    assert stop and mon.best_epoch == 1
    bias = model.bias.detach().clone()
    mon.restore(model)
    assert torch.equal(model.weight, best_w) and torch.equal(model.bias, bias)  # frozen bias kept as is


def test_monitor_scores_only_the_given_positions():
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0.1, 0.9, np.nan, 0.8, np.nan])
    mon = ValidationAUC(lambda: p, y, patience=1, positions=np.array([0, 1, 3]))
    metrics, _ = mon.update(nn.Linear(1, 1), 1)
    assert metrics["valid_auc"] == 1.0


def test_a_decaying_schedule_spans_all_rounds_of_an_alternation():
    w = nn.Parameter(torch.zeros(1))
    seen = []

    def loss(idx):
        seen.append(opt_ref[0].param_groups[0]["lr"])
        return (w - 1).pow(2).sum()

    opt_ref = []
    phase = Phase("p", IndexSource(4, 2), loss, [w], epochs=1, lr=0.1, schedule="linear")
    original = torch.optim.AdamW.__init__

    def spy(self, *a, **k):
        original(self, *a, **k)
        opt_ref.append(self)

    torch.optim.AdamW.__init__ = spy
    try:
        Engine(torch.device("cpu")).run_phases([phase], rounds=3)
    finally:
        torch.optim.AdamW.__init__ = original
    assert seen == pytest.approx([0.1 * (1 - s / 6) for s in range(6)])  # 6 planned steps over 3 rounds


def test_a_monitor_without_a_model_is_refused():
    mon = ValidationAUC(lambda: np.zeros(2), np.array([0, 1]), patience=1)
    with pytest.raises(ValueError, match="phase 'p': a monitor needs model="):
        Phase("p", IndexSource(2, 1), lambda i: None, [], epochs=1, lr=0.1, monitor=mon)


@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipping and not clipping
@pytest.mark.parametrize("shapes", [[(161_554,)], [(5377, 16), (144, 256), (256,), (1,)]])
def test_clip_grad_norm_is_torchs_clipping_bit_for_bit(shapes, max_norm):
    from ctrbench.engine.clip import clip_grad_norm

    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(s, generator=gen) * 0.1 for s in shapes]
    ref = [nn.Parameter(torch.zeros(s)) for s in shapes]
    for p, g in zip(ref, grads, strict=True):
        p.grad = g.clone()
    ref_norm = nn.utils.clip_grad_norm_(ref, max_norm)
    ours = [g.clone() for g in grads]
    norm = clip_grad_norm(ours, max_norm)
    assert torch.equal(norm, ref_norm)
    for mine, p in zip(ours, ref, strict=True):
        assert torch.equal(mine, p.grad)
    # and the norm is the L2 norm of everything together, written independently
    assert float(norm) == pytest.approx(float(torch.cat([g.reshape(-1) for g in grads]).double().norm()), rel=1e-5)
    scaled = max_norm < float(norm)
    assert torch.equal(ours[0], grads[0]) is not scaled
