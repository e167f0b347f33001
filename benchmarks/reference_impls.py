"""The same CTR model trained by ctrbench, DeepCTR-Torch 0.3.0 and FuxiCTR 2.3.10 on the same numpy arrays.

Each adapter takes a ctrbench ``CTRData`` (``X`` int64[N, F], ``y`` float32[N], temporal train/valid/test
splits), converts it *once, untimed* into the form its library's users hand it (DeepCTR: a dict of column
arrays; FuxiCTR: one ``.npz`` per split plus an in-memory ``FeatureMap``), and then trains through the
library's own public training call:

=========== ========================================================= ==========================================
adapter     timed call (``fit_one_epoch``)                             model
=========== ========================================================= ==========================================
ctrbench    ``Trainer(TrainConfig(epochs=1, ...)).fit(model, data)``   ``registry("ctr").get(name).create(...)``
deepctr     ``model.fit(x, y, batch_size, epochs=1, verbose=0,         ``deepctr_torch.models.DeepFM`` / ``DCN``
            validation_data=(x_valid, y_valid))``
fuxictr     ``RankDataLoader(...)`` + ``model.fit(train_gen, epochs=1, ``FuxiModel`` below (FuxiCTR's model zoo is
            validation_data=valid_gen)``                               not on PyPI: composed from its layers)
=========== ========================================================= ==========================================

So one timed round is one epoch *as each library runs it*: its own input conversion (tensor or DataLoader
construction), the training loop over the train split, and one validation pass over the valid split. None
prints progress (``verbose=0``), none uses weight decay or L2 regularisation.

Identical model structure in all three (``MODELS``): embedding size 16 for every field, ReLU MLP
``HIDDEN = (400, 400, 400)``, no dropout, no batch norm, ``CROSS_LAYERS = 3``, Adam(lr 1e-3). What differs is
what each library does by default and cannot be switched off without patching it; those differences are
part of what is measured:

- DeepCTR sums the loss over the batch (``reduction='sum'``), does not clip gradients, initialises every DNN
  weight as N(0, 1e-4) (``init_std``), casts the whole input to float32 per batch and slices it per field.
- FuxiCTR clips the gradient norm at 10 (as ctrbench), initialises Linear layers Xavier-normal (as ctrbench),
  collates batches from per-row numpy slices in a ``torch.utils.data.DataLoader`` (``num_workers`` worker
  processes, its default 1), and its DeepFM has one redundant bias (``FactorizationMachine``'s LR bias plus
  the MLP output bias).
- ctrbench gathers batches from tensors with index vectors (no DataLoader), AdamW with weight_decay 0 (= Adam).

All three validate at the training batch size; test predictions (untimed) use batches of ``EVAL_BATCH``.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrbench.data.types import CTRData

IMPLS = ("ctrbench", "deepctr", "fuxictr")
EMBED_DIM = 16
HIDDEN = (400, 400, 400)
CROSS_LAYERS = 3
LR = 1e-3
GRAD_CLIP = 10.0
EVAL_BATCH = 4096

@dataclass(frozen=True)
class BenchModel:
    """One benchmark configuration: the ctrbench backbone (``ctr``, a registry name and the structure every
    library builds) and what sets its size. Everything is spelled out, so the benchmark does not drift when a
    backbone's defaults change."""

    ctr: str
    hidden: tuple[int, ...] = ()
    cross: int = 0

    def ctrbench_config(self) -> dict[str, Any]:
        if self.ctr in ("dnn", "deepfm"):
            return {"hidden_units": self.hidden}
        if self.ctr == "dcn":
            return {"num_cross_layers": self.cross, "dnn_hidden_units": self.hidden}
        if self.ctr == "dcnv2":
            return {"num_cross_layers": self.cross, "dnn_hidden_units": self.hidden, "model_structure": "parallel",
                    "use_low_rank_mixture": False}
        return {}  # lr, fm: nothing to size

    def as_dict(self) -> dict[str, Any]:
        return {"ctr": self.ctr, "hidden": list(self.hidden), "cross": self.cross}


MODELS: dict[str, BenchModel] = {
    # the compute-heavy regime: 400-wide MLPs, where a step is mostly arithmetic
    "dnn": BenchModel("dnn", HIDDEN),
    "deepfm": BenchModel("deepfm", HIDDEN),
    "dcn": BenchModel("dcn", HIDDEN, CROSS_LAYERS),
    "dcnv2": BenchModel("dcnv2", HIDDEN, CROSS_LAYERS),
    # the overhead regime (issue 18): small models at DeepCTR-Torch's default sizes, where a step costs several
    # times its arithmetic and the library's per-step work decides the speed
    "lr": BenchModel("lr"),
    "fm": BenchModel("fm"),
    "deepfm-256-128": BenchModel("deepfm", (256, 128)),
    "dcn-2x-128-128": BenchModel("dcn", (128, 128), 2),
}
OVERHEAD_MODELS = ("lr", "fm", "deepfm-256-128", "dcn-2x-128-128")

# Parameters a reference has beyond ctrbench's model, by construction (documented above), by backbone.
EXTRA_PARAMETERS = {("fuxictr", "deepfm"): 1}


def versions() -> dict[str, str]:
    """Versions of the libraries this module compares (for the benchmark's machine info)."""
    import importlib.metadata as md

    out = {}
    for dist in ("ctrbench", "torch", "numpy", "deepctr-torch", "fuxictr"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _cpu_or_cuda(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Adapter:
    """One library training one model: ``build()`` (fresh weights, untimed), ``fit_one_epoch()`` (timed),
    ``predict(split)`` → click probabilities, ``num_parameters()``."""

    impl = ""

    def __init__(self, data: CTRData, model: str, batch_size: int, *, seed: int = 0, device: str = "cpu",
                 workdir: Path | None = None) -> None:
        if model not in MODELS:
            raise KeyError(f"unknown benchmark model '{model}'; known: {', '.join(MODELS)}")
        self.data, self.model_name, self.batch_size, self.seed = data, model, int(batch_size), int(seed)
        self.device = _cpu_or_cuda(device)
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"ctrbench-bench-{self.impl}-")
            workdir = Path(self._tmp.name)
        self.workdir = Path(workdir)
        self.model: torch.nn.Module | None = None

    def build(self) -> None:
        raise NotImplementedError

    def fit_one_epoch(self) -> None:
        raise NotImplementedError

    def predict(self, split: str) -> np.ndarray:
        raise NotImplementedError

    def num_parameters(self) -> int:
        assert self.model is not None, "build() first"
        return sum(p.numel() for p in self.model.parameters())

    def release(self) -> None:
        """Drop the model and its optimizer state, so the next ``build`` starts from the same memory baseline."""
        self.model = None

    def close(self) -> None:
        self.release()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# -- ctrbench -----------------------------------------------------------------------------------------

class CtrbenchAdapter(Adapter):
    impl = "ctrbench"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from ctrbench.plugins import load_plugins
        from ctrbench.trainer import TrainConfig

        self.spec = MODELS[self.model_name]
        self.entry = load_plugins().registry("ctr").get(self.spec.ctr)
        # Validation at the training batch size, as DeepCTR's and FuxiCTR's fit do (ctrbench's default eval batch,
        # 4096, would add ~30 MiB of activations to the peak at batch 256 and save a little time).
        self.config = TrainConfig(epochs=1, batch_size=self.batch_size, eval_batch_size=self.batch_size, lr=LR,
                                  weight_decay=0.0, patience=1, grad_clip=GRAD_CLIP)

    def build(self) -> None:
        from ctrbench.trainer import Trainer

        torch.manual_seed(self.seed)
        self.model = self.entry.create(fields=self.data.fields, embed_dim=EMBED_DIM,
                                       **self.spec.ctrbench_config())
        # A fresh Trainer per round: its DeviceData (the arrays as tensors) is rebuilt inside the timed fit.
        self.trainer = Trainer(self.config, torch.device(self.device), seed=self.seed)

    def fit_one_epoch(self) -> None:
        self.trainer.fit(self.model, self.data)

    def release(self) -> None:
        super().release()
        self.trainer = None

    def predict(self, split: str) -> np.ndarray:
        # scoring at EVAL_BATCH like the other two libraries' predict (validation inside fit uses the training batch)
        return self.trainer.predict(self.model, self.data, split, batch_size=EVAL_BATCH)


# -- DeepCTR-Torch ------------------------------------------------------------------------------------

class DeepCTRAdapter(Adapter):
    impl = "deepctr"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.names = [f.name for f in self.data.fields]
        self.inputs = {s: self._columns(s) for s in ("train", "valid", "test")}

    def _columns(self, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        rows = np.asarray(self.data.splits[split])
        X = np.asarray(self.data.X[rows])
        return ({n: np.ascontiguousarray(X[:, j]) for j, n in enumerate(self.names)},
                np.asarray(self.data.y[rows], dtype=np.float32))

    def build(self) -> None:
        from deepctr_torch.inputs import SparseFeat
        from deepctr_torch.models import DCN, DeepFM

        cols = [SparseFeat(f.name, vocabulary_size=int(f.vocab_size), embedding_dim=EMBED_DIM)
                for f in self.data.fields]
        spec = MODELS[self.model_name]
        common = {"dnn_hidden_units": spec.hidden, "l2_reg_linear": 0.0, "l2_reg_embedding": 0.0,
                  "l2_reg_dnn": 0.0, "seed": self.seed, "device": self.device}
        torch.manual_seed(self.seed)
        if spec.ctr in ("lr", "fm", "dnn", "deepfm"):
            # DeepCTR has no LR, FM or plain-DNN model: DeepFM with the parts switched off is each (its DNN is
            # off when dnn_hidden_units is empty; first-order columns are its linear part).
            # LR gets no embedding columns: DeepCTR would build (and never use) their tables.
            linear = cols if spec.ctr in ("lr", "fm", "deepfm") else []
            self.model = DeepFM(linear, [] if spec.ctr == "lr" else cols, use_fm=spec.ctr in ("fm", "deepfm"),
                                **common)
        else:
            self.model = DCN([], cols, cross_num=spec.cross, l2_reg_cross=0.0,
                             cross_parameterization="vector" if spec.ctr == "dcn" else "matrix", **common)
        self.model.compile(torch.optim.Adam(self.model.parameters(), lr=LR), "binary_crossentropy", metrics=["auc"])

    def fit_one_epoch(self) -> None:
        x, y = self.inputs["train"]
        self.model.fit(dict(x), y, batch_size=self.batch_size, epochs=1, verbose=0, shuffle=True,
                       validation_data=self.inputs["valid"])

    def predict(self, split: str) -> np.ndarray:
        x, _ = self.inputs[split]
        return self.model.predict(dict(x), batch_size=EVAL_BATCH).reshape(-1)


# -- FuxiCTR -------------------------------------------------------------------------------------------

def _fuxi_model_class() -> type:
    """FuxiCTR's model-zoo DNN / DeepFM / DCN / DCNv2 structure, built from the ``fuxictr`` wheel's layers.

    The model zoo (``model_zoo/<Model>/src``) lives only in FuxiCTR's repository, not in the PyPI package, so
    this class composes the same wheel layers the zoo's models do: ``FeatureEmbedding`` → (``FactorizationMachine``
    | ``CrossNet`` | ``CrossNetV2``) and ``MLP_Block`` → logit, on FuxiCTR's ``BaseModel`` (its fit loop,
    Adam via ``compile``, Xavier init via ``reset_parameters``).
    """
    from fuxictr.pytorch.layers import (
        CrossNet,
        CrossNetV2,
        FactorizationMachine,
        FeatureEmbedding,
        LogisticRegression,
        MLP_Block,
    )
    from fuxictr.pytorch.models import BaseModel
    from torch import nn

    class FuxiModel(BaseModel):
        def __init__(self, feature_map: Any, kind: str, embedding_dim: int, hidden_units: list[int],
                     num_cross_layers: int, learning_rate: float, **kwargs: Any) -> None:
            super().__init__(feature_map, model_id=f"{kind}_bench", **kwargs)
            self.kind = kind
            self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
            dim = feature_map.sum_emb_out_dim()
            if kind == "lr":  # the zoo's LR: one weight per feature value + bias
                self.embedding_layer = None
                self.lr_layer = LogisticRegression(feature_map, use_bias=True)
            elif kind == "fm":  # the zoo's FM: its FactorizationMachine holds the LR part and the bias
                self.fm = FactorizationMachine(feature_map)
            elif kind in ("dnn", "deepfm"):
                self.mlp = MLP_Block(input_dim=dim, output_dim=1, hidden_units=hidden_units,
                                     hidden_activations="ReLU")
                self.fm = FactorizationMachine(feature_map) if kind == "deepfm" else None
            else:
                self.crossnet = CrossNet(dim, num_cross_layers) if kind == "dcn" else CrossNetV2(dim, num_cross_layers)
                self.dnn = MLP_Block(input_dim=dim, output_dim=None, hidden_units=hidden_units,
                                     hidden_activations="ReLU")
                self.fc = nn.Linear(dim + hidden_units[-1], 1)  # parallel structure: [cross; dnn] → logit
            self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
            self.reset_parameters()
            self.model_to_device()

        def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            X = self.get_inputs(inputs)
            if self.kind == "lr":
                logit = self.lr_layer(X)
            elif self.kind == "fm":
                logit = self.fm(X, self.embedding_layer(X))
            elif self.kind == "deepfm":
                emb = self.embedding_layer(X)  # [B, F, d]
                logit = self.fm(X, emb) + self.mlp(emb.flatten(start_dim=1))
            elif self.kind == "dnn":
                logit = self.mlp(self.embedding_layer(X, flatten_emb=True))
            else:
                x0 = self.embedding_layer(X, flatten_emb=True)  # [B, F*d]
                logit = self.fc(torch.cat([self.crossnet(x0), self.dnn(x0)], dim=-1))
            return {"y_pred": self.output_activation(logit)}

    return FuxiModel


class FuxiCTRAdapter(Adapter):
    impl = "fuxictr"
    LABEL = "label"

    def __init__(self, *args: Any, num_workers: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from fuxictr.features import FeatureMap

        # NpzDataLoader's own default is one worker process; CTRBENCH_BENCH_FUXI_WORKERS overrides it.
        if num_workers is None:
            num_workers = int(os.environ.get("CTRBENCH_BENCH_FUXI_WORKERS", "1"))
        self.num_workers = num_workers
        self.names = [f.name for f in self.data.fields]
        self.paths = {s: self._write_npz(s) for s in ("train", "valid", "test")}
        fmap = FeatureMap(f"bench_{self.data.name}", str(self.workdir))
        fmap.features = OrderedDict((f.name, {"type": "categorical", "source": "", "vocab_size": int(f.vocab_size)})
                                    for f in self.data.fields)
        fmap.labels = [self.LABEL]
        fmap.default_emb_dim = EMBED_DIM
        fmap.num_fields = fmap.get_num_fields()
        fmap.total_features = sum(int(f.vocab_size) for f in self.data.fields)
        fmap.set_column_index()
        self.feature_map = fmap

    def _write_npz(self, split: str) -> str:
        rows = np.asarray(self.data.splits[split])
        X = np.asarray(self.data.X[rows])
        cols = {n: X[:, j] for j, n in enumerate(self.names)}
        cols[self.LABEL] = np.asarray(self.data.y[rows], dtype=np.float32)
        path = self.workdir / f"{split}.npz"
        np.savez(path, **cols)
        return str(path)

    def build(self) -> None:
        torch.manual_seed(self.seed)
        cls = _fuxi_model_class()
        spec = MODELS[self.model_name]
        self.model = cls(self.feature_map, kind=spec.ctr, embedding_dim=EMBED_DIM, hidden_units=list(spec.hidden),
                         num_cross_layers=spec.cross, learning_rate=LR,
                         gpu=0 if self.device.startswith("cuda") else -1, optimizer="adam",
                         loss="binary_crossentropy", metrics=["AUC"], monitor="AUC", verbose=0,
                         model_root=str(self.workdir / "checkpoints"))
        # BaseModel saves its best checkpoint under model_root/<dataset_id> but never creates that directory.
        Path(self.model.checkpoint).parent.mkdir(parents=True, exist_ok=True)

    def _loader(self, stage: str, batch_size: int, workers: int) -> Any:
        from fuxictr.pytorch.dataloaders import RankDataLoader

        if stage == "train":
            return RankDataLoader(self.feature_map, stage="train", train_data=self.paths["train"],
                                  valid_data=self.paths["valid"], batch_size=batch_size, shuffle=True,
                                  data_format="npz", num_workers=workers)
        return RankDataLoader(self.feature_map, stage="test", test_data=self.paths[stage], batch_size=batch_size,
                              shuffle=False, data_format="npz", num_workers=workers)

    def fit_one_epoch(self) -> None:
        train_gen, valid_gen = self._loader("train", self.batch_size, self.num_workers)
        self.model.fit(train_gen, epochs=1, validation_data=valid_gen, max_gradient_norm=GRAD_CLIP)

    def predict(self, split: str) -> np.ndarray:
        return np.asarray(self.model.predict(self._loader(split, EVAL_BATCH, 0)), dtype=np.float64)


ADAPTERS: dict[str, type[Adapter]] = {"ctrbench": CtrbenchAdapter, "deepctr": DeepCTRAdapter, "fuxictr": FuxiCTRAdapter}


def make_adapter(impl: str, data: CTRData, model: str, batch_size: int, **kwargs: Any) -> Adapter:
    if impl not in ADAPTERS:
        raise KeyError(f"unknown implementation '{impl}'; known: {', '.join(ADAPTERS)}")
    return ADAPTERS[impl](data, model, batch_size, **kwargs)
