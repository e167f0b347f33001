"""The shared trainer: learning, seeded determinism, early stopping with best-weight restore, NaN guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctrbench.errors import RunError
from ctrbench.stats import auc
from ctrbench.trainer import TrainConfig, Trainer, resolve_device
from ctrbench_ctr.dnn import DNN
from ctrbench_ctr.fm import FM


def fit_fm(data, seed, **cfg):
    torch.manual_seed(seed)
    model = FM(data.fields, embed_dim=8)
    trainer = Trainer(TrainConfig(**{"epochs": 3, "batch_size": 128, "lr": 0.01, **cfg}), torch.device("cpu"),
                      seed=seed)
    report = trainer.fit(model, data)
    return model, trainer, report


def test_fm_learns_the_planted_interaction(tiny_data):
    model, trainer, report = fit_fm(tiny_data, seed=0)
    p = trainer.predict(model, tiny_data, "test")
    y = tiny_data.y[tiny_data.splits["test"]]
    assert p.shape == y.shape and np.all((p > 0) & (p < 1))
    assert auc(y, p) > 0.7
    assert report.best_valid_auc == max(h["valid_auc"] for h in report.history)


def test_same_seed_same_auc_to_1e6(tiny_data):
    a = fit_fm(tiny_data, seed=3)
    b = fit_fm(tiny_data, seed=3)
    c = fit_fm(tiny_data, seed=4)
    y = tiny_data.y[tiny_data.splits["test"]]
    pa, pb, pc = (t.predict(m, tiny_data, "test") for m, t, _ in (a, b, c))
    assert abs(auc(y, pa) - auc(y, pb)) < 1e-6
    np.testing.assert_allclose(pa, pb, atol=1e-7)
    assert not np.allclose(pa, pc)


def test_early_stopping_restores_the_best_epoch(tiny_data):
    # lr so high that validation AUC peaks early and then degrades
    model, trainer, report = fit_fm(tiny_data, seed=0, epochs=8, lr=0.5, patience=2)
    best = max(report.history, key=lambda h: h["valid_auc"])
    assert report.best_epoch == best["epoch"]
    assert report.epochs_run <= min(8, report.best_epoch + 2)
    restored = auc(tiny_data.y[tiny_data.splits["valid"]], trainer.predict(model, tiny_data, "valid"))
    assert restored == pytest.approx(best["valid_auc"], abs=1e-9)


def test_nan_loss_is_a_run_error_naming_the_run(tiny_data):
    model = DNN(tiny_data.fields, embed_dim=4, hidden_units=(8,))
    trainer = Trainer(TrainConfig(epochs=1), torch.device("cpu"), run_name="dnn seed 1")

    def nan_loss(m, batch):
        return m(batch).sum() * float("nan")

    with pytest.raises(RunError, match=r"run dnn seed 1: loss became nan at epoch 1 step 0"):
        trainer.fit(model, tiny_data, loss_fn=nan_loss)


def test_max_samples_subsamples_train_deterministically(tiny_data):
    trainer = Trainer(TrainConfig(max_samples=100), torch.device("cpu"), seed=5)
    rows = trainer.train_rows(tiny_data)
    assert len(rows) == 100 and torch.equal(rows, trainer.train_rows(tiny_data))
    assert set(rows.tolist()) <= set(tiny_data.splits["train"].tolist())


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RunError, match="CUDA is not available"):
            resolve_device("cuda")


def test_memmap_data_gives_the_same_predictions(tiny_data, tmp_path):
    model, trainer, _ = fit_fm(tiny_data, seed=0, epochs=1)
    X = np.memmap(tmp_path / "X.bin", dtype=np.int64, mode="w+", shape=tiny_data.X.shape)
    X[:] = tiny_data.X
    import dataclasses

    mm = dataclasses.replace(tiny_data, X=X)
    fresh = Trainer(trainer.config, torch.device("cpu"))
    np.testing.assert_allclose(fresh.predict(model, mm, "test"), trainer.predict(model, tiny_data, "test"), atol=1e-7)


def test_predict_batch_size_changes_batching_not_predictions(tiny_data):
    """``predict(batch_size=)`` (the benchmarks score at 4096): the same probabilities in the split's order as
    row-by-row scoring."""
    torch.manual_seed(0)
    model = DNN(tiny_data.fields, embed_dim=4, hidden_units=(8,))
    trainer = Trainer(TrainConfig(epochs=1, batch_size=64, eval_batch_size=64), torch.device("cpu"), seed=0)
    big = trainer.predict(model, tiny_data, "test", batch_size=4096)
    one_by_one = trainer.predict(model, tiny_data, "test", batch_size=1)
    assert big.shape == (len(tiny_data.splits["test"]),)
    np.testing.assert_allclose(big, one_by_one, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(big, trainer.predict(model, tiny_data, "test"), rtol=1e-5, atol=1e-7)
