"""The direct fused AdamW step (ctrbench/engine/fused_step.py) against torch.optim's own step: the same bits, and
torch's step wherever the shortcut does not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctrbench.engine.fused_step import DirectFusedStep

SHAPES = [(37, 5), (129,), (3, 4, 2)]
# the GPU too where there is one (the engine takes the shortcut on CUDA as well); never skipped on the CPU
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _params(seed: int, device: str = "cpu") -> list[nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(s, generator=gen).to(device)) for s in SHAPES]


def _optimizer(cls, params, **kw):
    # two groups with their own lr and weight decay, as the engine's decay / no-decay split has them
    return cls([{"params": params[:2], "weight_decay": 0.05}, {"params": params[2:], "lr": 3e-3}],
               lr=1e-2, fused=True, **kw)


def _train(cls, direct: bool, device: str, steps: int = 6):
    params = _params(0, device)
    opt = _optimizer(cls, params)
    stepper = DirectFusedStep(opt)
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        for i, p in enumerate(params):
            # the middle tensor gets no gradient in step 3: torch skips it (no decay, no moment update)
            p.grad = None if (step == 3 and i == 1) else torch.randn(p.shape, generator=gen).to(device)
        if step == 4:
            opt.param_groups[0]["lr"] = 5e-3  # a schedule changing the lr between steps
        stepper.step() if direct else opt.step()
    return params, opt, stepper


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cls", [torch.optim.AdamW, torch.optim.Adam])
def test_the_direct_step_is_torchs_fused_step_bit_for_bit(cls, device):
    ours, opt, stepper = _train(cls, direct=True, device=device)
    ref, ref_opt, _ = _train(cls, direct=False, device=device)
    assert stepper.direct_steps == 5  # the first step is torch's own: it creates the state
    start = _params(0, device)
    for mine, theirs, s in zip(ours, ref, start, strict=True):
        assert torch.equal(mine, theirs) and not torch.equal(mine, s)
    mine_state, ref_state = opt.state_dict(), ref_opt.state_dict()
    assert mine_state["param_groups"] == ref_state["param_groups"]
    for k, state in ref_state["state"].items():
        assert set(mine_state["state"][k]) == set(state)
        for name, value in state.items():
            assert torch.equal(mine_state["state"][k][name], value), (k, name)
    # the tensor left without a gradient in step 3 took 5 steps, the others 6
    assert [float(ref_state["state"][k]["step"]) for k in range(3)] == [6.0, 5.0, 6.0]


def test_the_update_is_adamw_written_out():
    """Independent of torch's optimizer: one AdamW step by the formula, on the second step (bias corrections)."""
    p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01, fused=True)
    stepper = DirectFusedStep(opt)
    g1, g2 = torch.tensor([0.3, -0.1, 2.0], dtype=torch.float64), torch.tensor([0.1, 0.4, -1.0], dtype=torch.float64)
    x, m, v = p.detach().clone(), torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for t, g in enumerate((g1, g2), start=1):
        p.grad = g.clone()
        stepper.step()
        x = x * (1 - 0.1 * 0.01)
        m, v = 0.9 * m + 0.1 * g, 0.99 * v + 0.01 * g * g
        x = x - 0.1 * (m / (1 - 0.9**t)) / ((v / (1 - 0.99**t)).sqrt() + 1e-8)
    assert stepper.direct_steps == 1
    torch.testing.assert_close(p.detach(), x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.AdamW(ps, fused=False),
    lambda ps: torch.optim.AdamW(ps, foreach=True),
    lambda ps: torch.optim.AdamW(ps, fused=True, amsgrad=True),
    lambda ps: torch.optim.AdamW(ps, fused=True, maximize=True),
    lambda ps: torch.optim.SGD(ps, lr=0.1),
])
def test_configurations_it_does_not_mirror_are_not_supported(make):
    assert not DirectFusedStep.supports(make(_params(0)))


def test_supported_configurations():
    assert DirectFusedStep.supports(torch.optim.AdamW(_params(0), fused=True))
    assert DirectFusedStep.supports(torch.optim.Adam(_params(0), fused=True, weight_decay=0.1))


def test_a_step_hook_or_a_new_parameter_sends_the_step_through_torch():
    params = _params(0)
    opt = torch.optim.AdamW(params[:2], lr=1e-2, fused=True)
    stepper = DirectFusedStep(opt)
    calls = []
    for p in params:
        p.grad = torch.ones_like(p)
    stepper.step()
    stepper.step()
    assert stepper.direct_steps == 1
    handle = opt.register_step_post_hook(lambda *_: calls.append(1))
    stepper.step()
    assert calls == [1] and stepper.direct_steps == 1  # the hook ran: torch's step
    handle.remove()
    opt.add_param_group({"params": params[2:]})  # no state yet: torch's step creates it
    stepper.step()
    assert stepper.direct_steps == 1 and float(opt.state[params[2]]["step"]) == 1.0
    stepper.step()
    assert stepper.direct_steps == 2 and float(opt.state[params[2]]["step"]) == 2.0
    assert float(opt.state[params[0]]["step"]) == 5.0  # five steps, two of them direct


def test_a_tensor_learning_rate_goes_through_torch():
    params = _params(0)
    opt = torch.optim.AdamW(params, lr=torch.tensor(1e-2), fused=True)
    stepper = DirectFusedStep(opt)
    for p in params:
        p.grad = torch.ones_like(p)
    stepper.step()
    stepper.step()
    assert stepper.direct_steps == 0 and float(opt.state[params[0]]["step"]) == 2.0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("flat", [True, False])
def test_a_whole_fit_is_the_same_bytes_with_and_without_the_shortcut(tiny_data, flat, device):
    from ctrbench.trainer import TrainConfig, Trainer
    from ctrbench_ctr.deepfm import DeepFM

    predictions, calls = [], []
    for direct in (True, False):
        torch.manual_seed(5)
        model = DeepFM(tiny_data.fields, embed_dim=8)
        trainer = Trainer(TrainConfig(epochs=3, batch_size=128, lr=0.01, patience=1, weight_decay=1e-4),
                          torch.device(device), seed=5)
        trainer.engine.flat_params, trainer.engine.direct_step = flat, direct
        original = DirectFusedStep.step
        DirectFusedStep.step = lambda self, _orig=original, _direct=direct: (calls.append(_direct), _orig(self))[1]
        try:
            report = trainer.fit(model, tiny_data)
        finally:
            DirectFusedStep.step = original
        assert report.flat == flat and report.steps > 10
        predictions.append(trainer.predict(model, tiny_data, "test"))
    assert calls and set(calls) == {True}  # the engine took the shortcut in the first fit only
    assert predictions[0].tobytes() == predictions[1].tobytes()
