"""Sparse embedding gradients (``train.sparse_embeddings``) against dense AdamW: speed and AUC, in one process.

    python benchmarks/sparse_tables.py [--seeds 3] [--out results.json] [--tiny]

Two measurements, one thread, DeepFM with DeepCTR-Torch's default DNN (256-128), embedding 16, batch 256, lr 1e-3,
clipping at 10, early stopping on validation AUC (patience 2, at most 10 epochs):

``speed``
    Training samples/s of one epoch on ``synthetic`` data whose tables are large: 8 Zipf fields of
    ``--vocab`` values each (200,000: 1.6M table rows, 25.6M embedding weights), 100,000 rows; dense and sparse
    alternate, best of ``--rounds``. The ratio sparse / dense is the number to read (both in this process).
``auc``
    Test AUC on MovieLens-100K (5,377 table rows, where the dense update costs little) for ``--seeds`` seeds,
    dense and sparse from the same initial weights; the issue's bar is equal AUC (|mean difference| <= 0.003).

``--tiny`` runs both on small synthetic data in seconds (the test suite does, so the script cannot rot).
Run it on an otherwise idle machine: benchmarks/README.md, "Reading the numbers".
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrbench.plugins import load_plugins
from ctrbench.stats import auc
from ctrbench.trainer import TrainConfig, Trainer

HIDDEN = (256, 128)


def _data(name: str, **config: Any) -> Any:
    cache = Path(os.environ.get("CTRBENCH_CACHE", Path.home() / ".cache" / "ctrbench"))
    return load_plugins().registry("datasets").get(name).create(**config).load(cache)


def _model(data: Any, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    entry = load_plugins().registry("ctr").get("deepfm")
    return entry.create(fields=data.fields, embed_dim=16, hidden_units=HIDDEN)


def _config(sparse: bool, epochs: int, patience: int = 2) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=256, lr=1e-3, weight_decay=0.0, patience=patience, grad_clip=10.0,
                       sparse_embeddings=sparse)


def speed(data: Any, rounds: int) -> dict[str, Any]:
    """Best-of-``rounds`` samples/s of one training epoch (validation included, as the other benchmarks), after
    one untimed warm-up epoch of each arm (the first fit of a process pays for allocator and oneDNN set-up)."""
    best = {False: 0.0, True: 0.0}
    n = len(data.splits["train"])
    for r in range(rounds + 1):
        for sparse in (False, True):
            model = _model(data, 0)
            trainer = Trainer(_config(sparse, epochs=1, patience=1), torch.device("cpu"), seed=0)
            t = time.perf_counter()
            trainer.fit(model, data)
            if r:
                best[sparse] = max(best[sparse], n / (time.perf_counter() - t))
    rows = sum(f.vocab_size for f in data.fields)
    return {"table_rows": rows, "train_rows": n, "dense_samples_per_s": round(best[False]),
            "sparse_samples_per_s": round(best[True]), "ratio": round(best[True] / best[False], 2)}


def test_auc(data: Any, seeds: int) -> dict[str, Any]:
    """Test AUC of dense and sparse training for seeds 1..``seeds`` (same initial weights per seed)."""
    y = np.asarray(data.y[data.splits["test"]])
    out: dict[str, list[float]] = {"dense": [], "sparse": []}
    for seed in range(1, seeds + 1):
        for sparse in (False, True):
            model = _model(data, seed)
            trainer = Trainer(_config(sparse, epochs=10), torch.device("cpu"), seed=seed)
            trainer.fit(model, data)
            out["sparse" if sparse else "dense"].append(round(auc(y, trainer.predict(model, data, "test")), 4))
    diff = float(np.mean(out["sparse"]) - np.mean(out["dense"]))
    return {**out, "mean_difference": round(diff, 4), "equal_within_0.003": abs(diff) <= 0.003}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=200_000)
    parser.add_argument("--tiny", action="store_true", help="small synthetic data, seconds (for the test suite)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.tiny:
        big = _data("synthetic", num_samples=3000, vocab_size=2000, history_length=0)
        small, rounds, seeds = _data("synthetic", num_samples=3000, vocab_size=50, history_length=0), 1, 1
    else:
        big = _data("synthetic", num_samples=100_000, vocab_size=args.vocab, history_length=0)
        small, rounds, seeds = _data("movielens-100k", history_length=0), args.rounds, args.seeds
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "loadavg_at_start": os.getloadavg(),
              "speed": speed(big, rounds), "auc": {"dataset": small.name, **test_auc(small, seeds)}}
    result["loadavg_at_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
