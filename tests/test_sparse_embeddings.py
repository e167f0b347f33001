"""``train.sparse_embeddings`` (ctrbench/engine/sparse.py): sparse table gradients stepped by a lazy Adam.

The references are written here, independently of the engine: Adam's update in NumPy over the rows a step looks
up, and the clipping factor from densified gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_tiny_data
from torch import nn

from ctrbench.data.types import Field
from ctrbench.engine import Engine, IndexSource, Phase
from ctrbench.engine.clip import clip_grad_norm
from ctrbench.engine.sparse import SparseTables, sparse_gradients
from ctrbench.errors import RunError
from ctrbench.models.base import FieldEmbedding
from ctrbench.stats import auc
from ctrbench.trainer import TrainConfig, Trainer
from ctrbench_ctr.deepfm import DeepFM
from ctrbench_ctr.din import DIN

FIELDS = [Field("a", "categorical", 6, "a"), Field("b", "categorical", 4, "b")]


class TwoTables(nn.Module):
    """A FieldEmbedding read through ``forward`` and through ``lookup``, and a dense weight on top."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(FIELDS, 3, init_std=0.5)
        self.w = nn.Parameter(torch.linspace(-1, 1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.embedding(x).sum(1) + self.embedding.lookup("b", x[:, 1])
        return both @ self.w


BATCHES = [torch.tensor([[1, 2], [1, 3], [4, 2]]), torch.tensor([[5, 1], [5, 1]])]
TARGETS = [torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.0, 1.0])]


def _engine_steps(lr: float = 0.1) -> tuple[TwoTables, torch.Tensor, list[torch.Tensor]]:
    """Two engine steps; also the per-step table gradients, taken from a copy by plain autograd."""
    torch.manual_seed(0)
    model = TwoTables()
    start = model.embedding.weight.detach().clone()
    grads = []
    shadow = TwoTables()
    shadow.load_state_dict(model.state_dict())

    def loss(i: torch.Tensor) -> torch.Tensor:
        k = int(i[0])
        # the shadow sees the weights the step starts from: its gradient is the one the optimizer gets
        shadow.load_state_dict(model.state_dict())
        shadow.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(shadow(BATCHES[k]), TARGETS[k]).backward()
        grads.append(shadow.embedding.weight.grad.detach().clone())
        return nn.functional.binary_cross_entropy_with_logits(model(BATCHES[k]), TARGETS[k])

    with sparse_gradients([model.embedding]) as sparse:
        Engine(torch.device("cpu")).run(Phase("p", _in_order(2), loss, [model.w], epochs=1, lr=lr,
                                              sparse_params=sparse))
    assert not model.embedding.sparse  # switched back after the phase
    return model, start, grads


def _in_order(n: int) -> IndexSource:
    """Batches 0, 1, ... of one index each, whatever the epoch's shuffle."""
    source = IndexSource(n, 1)
    source.epoch = lambda gen=None: iter(torch.arange(n).view(n, 1))
    return source


def test_sparse_tables_follow_a_lazy_adam_written_in_numpy():
    model, start, grads = _engine_steps(lr=0.1)
    w = start.numpy().astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.1
    for t, g in enumerate(grads, start=1):
        g = g.numpy().astype(np.float64)
        rows = np.flatnonzero(np.abs(g).sum(1) > 0)  # the rows this step looked up
        m[rows] = b1 * m[rows] + (1 - b1) * g[rows]
        v[rows] = b2 * v[rows] + (1 - b2) * g[rows] ** 2
        w[rows] -= lr * (m[rows] / (1 - b1 ** t)) / (np.sqrt(v[rows] / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(model.embedding.weight.detach().numpy(), w, rtol=1e-5, atol=1e-6)


def test_a_row_not_looked_up_does_not_move_where_dense_adam_moves_it():
    model, start, grads = _engine_steps()
    step1 = set(np.flatnonzero(grads[0].abs().sum(1).numpy() > 0))
    step2 = set(np.flatnonzero(grads[1].abs().sum(1).numpy() > 0))
    only_first = sorted(step1 - step2)
    never = sorted(set(range(start.shape[0])) - step1 - step2)
    assert only_first and never
    after = model.embedding.weight.detach()
    first = _after_first_step_dense_or_sparse(sparse=True)
    torch.testing.assert_close(after[only_first], first[only_first], rtol=0, atol=0)  # no step on momentum
    torch.testing.assert_close(after[never], start[never], rtol=0, atol=0)
    dense_first = _after_first_step_dense_or_sparse(sparse=False)
    dense_final = _two_dense_steps()
    assert (dense_final[only_first] - dense_first[only_first]).abs().max() > 1e-3  # dense Adam keeps moving it


def _after_first_step_dense_or_sparse(sparse: bool) -> torch.Tensor:
    torch.manual_seed(0)
    model = TwoTables()
    if sparse:
        with sparse_gradients([model.embedding]) as tables:
            phase = Phase("p", IndexSource(1, 1), lambda i: nn.functional.binary_cross_entropy_with_logits(
                model(BATCHES[0]), TARGETS[0]), [model.w], epochs=1, lr=0.1, sparse_params=tables)
            Engine(torch.device("cpu")).run(phase)
    else:
        phase = Phase("p", IndexSource(1, 1), lambda i: nn.functional.binary_cross_entropy_with_logits(
            model(BATCHES[0]), TARGETS[0]), list(model.parameters()), epochs=1, lr=0.1)
        Engine(torch.device("cpu"), flat_params=False).run(phase)
    return model.embedding.weight.detach().clone()


def _two_dense_steps() -> torch.Tensor:
    torch.manual_seed(0)
    model = TwoTables()
    phase = Phase("p", _in_order(2), lambda i: nn.functional.binary_cross_entropy_with_logits(
        model(BATCHES[int(i[0])]), TARGETS[int(i[0])]), list(model.parameters()), epochs=1, lr=0.1)
    Engine(torch.device("cpu"), flat_params=False).run(phase)
    return model.embedding.weight.detach().clone()


def test_sparse_lookups_give_the_dense_rows_and_gradients():
    torch.manual_seed(2)
    dense, sparse = FieldEmbedding(FIELDS, 3, init_std=0.5), FieldEmbedding(FIELDS, 3)
    sparse.load_state_dict(dense.state_dict())
    x, hist = torch.tensor([[1, 2], [5, 0], [1, 3]]), torch.tensor([[3, 0], [1, 1]])
    with sparse_gradients([sparse]):
        outs = [(m(x).sum(1) * torch.arange(3.0)).sum() + m.lookup("b", hist).pow(2).sum() for m in (dense, sparse)]
        for out in outs:
            out.backward()
    torch.testing.assert_close(outs[1], outs[0])
    assert sparse.weight.grad.is_sparse and not dense.weight.grad.is_sparse
    torch.testing.assert_close(sparse.weight.grad.to_dense(), dense.weight.grad)
    assert not sparse.sparse


def test_clipping_sparse_and_dense_gradients_equals_clipping_their_dense_copies():
    torch.manual_seed(1)
    table = nn.Parameter(torch.randn(7, 3))
    dense = nn.Parameter(torch.randn(4))
    rows = torch.tensor([1, 4, 1, 6])  # row 1 twice: its two gradients add up
    (nn.functional.embedding(rows, table, sparse=True).sum(0) @ torch.arange(3.0) + (dense ** 2).sum() * 3).backward()
    assert table.grad.is_sparse
    ref_table, ref_dense = nn.Parameter(table.detach().clone()), nn.Parameter(dense.detach().clone())
    ref_table.grad, ref_dense.grad = table.grad.to_dense().clone(), dense.grad.clone()
    ref_norm = nn.utils.clip_grad_norm_([ref_dense, ref_table], 2.0)
    norm = clip_grad_norm([dense.grad, *SparseTables([table], lr=0.1).coalesced_values()], 2.0)
    assert float(ref_norm) > 2.0  # so the factor is below one and clipping is exercised
    torch.testing.assert_close(norm, ref_norm)
    torch.testing.assert_close(table.grad.to_dense(), ref_table.grad)
    torch.testing.assert_close(dense.grad, ref_dense.grad)


def test_a_model_that_reads_the_whole_table_gets_a_clear_error():
    model = TwoTables()

    def loss(_: torch.Tensor) -> torch.Tensor:  # a penalty on every row: the table's gradient is dense
        return model(BATCHES[0]).sum() + model.embedding.weight.pow(2).sum()

    with sparse_gradients([model.embedding]) as tables, pytest.raises(RunError, match="dense gradient"):
        Engine(torch.device("cpu"), run_name="r1").run(
            Phase("p", IndexSource(1, 1), loss, [model.w], epochs=1, lr=0.1, sparse_params=tables))


@pytest.mark.parametrize("key", ["weight_decay", "embedding_regularizer"])
def test_dense_updates_of_the_tables_are_refused_with_the_option(key):
    with pytest.raises(ValueError, match=f"train.{key}"):
        TrainConfig(sparse_embeddings=True, **{key: 0.01})
    TrainConfig(sparse_embeddings=True, net_regularizer=0.01)  # the other weights may still be penalised


@pytest.mark.parametrize("cls", [DeepFM, DIN])
def test_sparse_training_learns_as_well_as_dense(cls):
    """Same planted signal, same steps: the lazy Adam's test AUC is within 0.03 of dense AdamW's (measured:
    DeepFM 0.757 vs 0.771, DIN 0.706 vs 0.687), and the tables' gradients were sparse (the engine checks; DIN also
    reads the item table through ``lookup``). Equal AUC at benchmark scale is benchmarks/README.md's."""
    data = make_tiny_data(n=4000, seed=3)
    if cls is DIN:
        data = _with_history(data)
    aucs = {}
    for sparse in (False, True):
        torch.manual_seed(5)
        model = cls([*data.fields, *data.sequence_fields], embed_dim=8)
        trainer = Trainer(TrainConfig(epochs=4, batch_size=64, lr=0.01, patience=4, sparse_embeddings=sparse),
                          torch.device("cpu"), seed=1)
        report = trainer.fit(model, data)
        assert report.steps == 4 * -(-len(data.splits["train"]) // 64)
        y = data.y[data.splits["test"]]
        aucs[sparse] = auc(y, trainer.predict(model, data, "test"))
    assert aucs[False] > 0.65  # the planted signal is learned
    assert abs(aucs[True] - aucs[False]) < 0.03, aucs


def _with_history(data):
    """The tiny data with a history field sharing the item table (each user's previous items, 3 slots)."""
    from dataclasses import replace

    hist = np.zeros((len(data.y), 3), dtype=np.int64)
    last: dict[int, list[int]] = {}
    for r, (u, i) in enumerate(zip(data.X[:, 0], data.X[:, 1], strict=True)):
        seen = last.setdefault(int(u), [])
        hist[r, :len(seen[-3:])] = seen[-3:][::-1]
        seen.append(int(i))
    field = Field("history", "sequence", data.fields[1].vocab_size, "recent items", shares="item_id")
    return replace(data, sequences={"history": hist}, sequence_fields=[field])


def test_the_benchmark_script_runs_end_to_end(tmp_path):
    """benchmarks/sparse_tables.py --tiny: both arms measured on the same data (the speed it reports is a
    measurement, not asserted; benchmarks/README.md)."""
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sparse_tables.py"
    spec = importlib.util.spec_from_file_location("sparse_tables", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "r.json"
    result = module.main(["--tiny", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    speed = result["speed"]
    assert speed["table_rows"] == 8 * 2001 and speed["train_rows"] == 2400
    assert speed["dense_samples_per_s"] > 0 and speed["sparse_samples_per_s"] > 0
    assert speed["ratio"] == pytest.approx(speed["sparse_samples_per_s"] / speed["dense_samples_per_s"], abs=0.01)
    aucs = result["auc"]
    assert len(aucs["dense"]) == len(aucs["sparse"]) == 1 and 0.5 < min(aucs["dense"] + aucs["sparse"]) < 1
    assert aucs["mean_difference"] == round(aucs["sparse"][0] - aucs["dense"][0], 4)


def test_validate_names_the_conflicting_train_keys_of_a_run(tmp_path):
    from ctrbench.errors import SuiteError
    from ctrbench.suite import load_suite

    suite = tmp_path / "s.yaml"
    suite.write_text("schema_version: 1\nname: s\ndatasets: [synthetic]\nseeds: [1]\n"
                     "defaults: {ctr: fm, train: {sparse_embeddings: true}}\n"
                     "variants:\n  plain: {}\n  decayed: {train.weight_decay: 0.01}\n")
    with pytest.raises(SuiteError, match=r"key 'train': train.sparse_embeddings: train.weight_decay .*variant decayed"):
        load_suite(suite)
    suite.write_text(suite.read_text().replace("train.weight_decay: 0.01", "train.net_regularizer: 0.01"))
    assert len(load_suite(suite).runs) == 2


def _zoo() -> list[str]:
    from ctrbench.plugins import load_plugins

    return sorted(load_plugins().registry("ctr"))


@pytest.mark.parametrize("name", _zoo())
def test_every_builtin_backbone_trains_with_sparse_tables(name):
    """Each zoo model reads its tables only through lookups, so the option works for all of them (the engine
    would stop on a dense table gradient) and every table row a training batch never looks up stays put."""
    from ctrbench.plugins import load_plugins

    data = _with_history(make_tiny_data(n=600, seed=1))
    torch.manual_seed(0)
    model = load_plugins().registry("ctr").get(name).create(fields=[*data.fields, *data.sequence_fields],
                                                             embed_dim=4)
    fe = next(m for m in model.modules() if isinstance(m, FieldEmbedding))
    before = fe.weight.detach().clone()
    Trainer(TrainConfig(epochs=1, batch_size=100, sparse_embeddings=True), torch.device("cpu")).fit(model, data)
    offsets = fe.offsets.numpy()
    seen = set((data.X[data.splits["train"]] + offsets).reshape(-1).tolist())
    seen |= set((data.sequences["history"][data.splits["train"]] + offsets[1]).reshape(-1).tolist())
    unseen = sorted(set(range(fe.weight.shape[0])) - seen)
    assert unseen  # at least the never-used index 0 of user_id and cat
    torch.testing.assert_close(fe.weight.detach()[unseen], before[unseen], rtol=0, atol=0)
    assert not torch.equal(fe.weight.detach(), before)  # and the looked-up rows did train
    assert fe.weight.grad is not None and fe.weight.grad.is_sparse  # the last step's gradient: the option engaged
