"""Contiguous parameters (ctrbench/engine/flat.py): the same training as separate tensors, engaged only where
that is exact, and no trace once a phase is over."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctrbench.engine import DeviceData, Engine, IndexSource, Phase
from ctrbench.trainer import TrainConfig, Trainer
from ctrbench_ctr.dcnv2 import DCNv2
from ctrbench_ctr.deepfm import DeepFM


def _fit(data, cls, flat: bool, grad_clip: float | None, seed: int = 3):
    torch.manual_seed(11)
    model = cls(data.fields, embed_dim=8)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.01, patience=1, grad_clip=grad_clip)
    trainer = Trainer(cfg, torch.device("cpu"), seed=seed)
    trainer.engine.flat_params = flat
    report = trainer.fit(model, data)
    return model, report


def _owns_its_storage(p: torch.Tensor) -> bool:
    return p._base is None and p.untyped_storage().nbytes() == p.numel() * p.element_size()


def _one_step(data, flat: bool, grad_clip: float | None) -> list[torch.Tensor]:
    """Two engine steps of a DeepFM from the same weights and batches (the second on a fresh batch)."""
    torch.manual_seed(11)
    model = DeepFM(data.fields, embed_dim=8)
    dd = DeviceData(data, torch.device("cpu"))
    batches = [dd.batch(torch.arange(64 * s, 64 * s + 64)) for s in range(2)]
    phase = Phase("p", IndexSource(2, 1), lambda i: nn.functional.binary_cross_entropy_with_logits(
        model(batches[int(i[0])]).float(), batches[int(i[0])].y), list(model.parameters()), epochs=1, lr=0.01,
        grad_clip=grad_clip, model=model)
    report = Engine(torch.device("cpu"), flat_params=flat).run(phase)
    assert report.flat == flat and report.steps == 2
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("grad_clip", [None, 1e-3])
def test_flat_steps_equal_separate_tensors_to_the_last_bit_or_two(tiny_data, grad_clip):
    """AdamW is elementwise; only the fused kernel's vector/scalar split (a tensor's tail) differs, by an ulp.
    With clipping the norm's sum runs in another order: an ulp in the clip factor, which Adam's division by
    sqrt(v) + eps turns into at most ~1e-4 of a step (lr 0.01) for gradients near eps."""
    flat, plain = _one_step(tiny_data, True, grad_clip), _one_step(tiny_data, False, grad_clip)
    torch.manual_seed(11)
    start = [p.detach().clone() for p in DeepFM(tiny_data.fields, embed_dim=8).parameters()]
    for a, b, s in zip(flat, plain, start, strict=True):
        if grad_clip is None:
            torch.testing.assert_close(a, b, rtol=4 * 2**-23, atol=1e-12)
        else:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        assert not torch.equal(b, s)  # both moved


@pytest.mark.parametrize("cls", [DeepFM, DCNv2])
def test_flat_training_gives_the_same_model(tiny_data, cls):
    """Whole fits with early stopping: same epochs and steps, and the same test predictions up to the drift of
    ulp-level differences over a whole fit. The one-step test above bounds a step's difference to an ulp or two
    (the fused AdamW kernel splits a tensor into vector body and scalar tail, and the flat buffer splits
    elsewhere); over hundreds of steps that drift grows with the CPU's vector width: below 1e-5 on the CI's and the
    EPYC's kernels, up to 2.7e-3 in a probability (DeepFM) on a Xeon with AVX-512/AMX (2026-12-05). A real
    difference in what the two paths train (a missed parameter, a wrong lr group) moves predictions by far more
    and their ranking with them, which the last assertion checks."""
    flat_model, flat_report = _fit(tiny_data, cls, flat=True, grad_clip=10.0)
    plain_model, plain_report = _fit(tiny_data, cls, flat=False, grad_clip=10.0)
    assert flat_report.flat and not plain_report.flat
    assert flat_report.best_epoch == plain_report.best_epoch and flat_report.steps == plain_report.steps
    dd = DeviceData(tiny_data, torch.device("cpu"))
    test = dd.batch(torch.as_tensor(tiny_data.splits["test"]))
    with torch.no_grad():
        flat_model.eval(), plain_model.eval()
        flat_p, plain_p = torch.sigmoid(flat_model(test)), torch.sigmoid(plain_model(test))
    torch.testing.assert_close(flat_p, plain_p, rtol=0, atol=1e-2)
    assert torch.corrcoef(torch.stack([flat_p, plain_p]))[0, 1] > 0.999


def test_parameters_own_their_storage_after_the_phase(tiny_data):
    model, report = _fit(tiny_data, DeepFM, flat=True, grad_clip=10.0)
    assert report.flat
    for name, p in model.named_parameters():
        assert _owns_its_storage(p), name
        assert p.grad is None, name
    pointers = {p.data_ptr() for p in model.parameters()}
    assert len(pointers) == len(list(model.parameters()))


class _WithUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Parameter(torch.ones(3))
        self.unused = nn.Parameter(torch.ones(2))  # e.g. a PLM's pooler in a phase that never calls it


def test_a_parameter_without_gradient_keeps_the_separate_tensors():
    """AdamW skips a parameter whose grad is None; a flat gradient would be zero and still decay its moments."""
    m = _WithUnused()
    phase = Phase("p", IndexSource(8, 2), lambda i: (m.used * len(i)).pow(2).sum(), list(m.parameters()),
                  epochs=2, lr=0.1, weight_decay=0.5)
    report = Engine(torch.device("cpu")).run(phase)
    assert not report.flat
    assert torch.equal(m.unused, torch.ones(2))  # untouched, as with separate tensors
    assert not torch.equal(m.used, torch.ones(3))


def test_alternating_phases_that_share_a_parameter_match_separate_tensors():
    """Views exist only while a phase runs: a parameter two alternating phases train stays one tensor."""

    def train(flat: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        shared, a, b = (nn.Parameter(torch.randn(4)) for _ in range(3))
        pa = Phase("A", IndexSource(6, 2), lambda i: ((shared + a) - 1).pow(2).sum(), [shared, a], epochs=1,
                   lr=0.05)
        pb = Phase("B", IndexSource(6, 3), lambda i: ((shared * b) + 1).pow(2).sum(), [b, shared], epochs=1,
                   lr=0.02, grad_clip=100.0)
        engine = Engine(torch.device("cpu"), flat_params=flat)
        reports = engine.run_phases([pa, pb], rounds=3)
        assert all(r.flat == flat for r in reports)
        return [shared.detach().clone(), a.detach().clone(), b.detach().clone()]

    for x, y in zip(train(True), train(False), strict=True):
        assert torch.equal(x, y)
