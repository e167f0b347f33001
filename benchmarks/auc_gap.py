"""Where ctrbench's one-epoch DCN AUC differs from DeepCTR-Torch's: one variant at a time, same seeds.

    python benchmarks/auc_gap.py [--model dcn] [--seeds 0 1 2]

MovieLens-100K, the throughput benchmark's configuration (``reference_impls.MODELS``: embedding 16, MLP
400-400-400, 3 cross layers), batch 256, one epoch, one thread. Variants, each over the same seeds:

- ``ctrbench``: as benchmarked;
- ``no-clip``: ``grad_clip`` 0 (DeepCTR does not clip);
- ``summed-loss``: BCE summed over the batch (DeepCTR's reduction) instead of averaged;
- ``deepctr-init``: DeepCTR's initialisation after ``build()``: N(0, 1e-4) MLP weights, PyTorch's default
  uniform biases and output layer, Xavier-normal cross vectors (embeddings are N(0, 1e-4) in both);
- ``deepctr``: DeepCTR-Torch itself.

Prints each variant's test AUCs and mean; benchmarks/README.md ("AUC") has the reading.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from reference_impls import make_adapter
from torch import nn

from ctrbench.plugins import load_plugins
from ctrbench.stats import auc

VARIANTS = ("ctrbench", "no-clip", "summed-loss", "deepctr-init", "deepctr")


def deepctr_init(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if not isinstance(m, nn.Linear):
            continue
        if "cross" in name:
            nn.init.xavier_normal_(m.weight)
            continue
        m.reset_parameters()  # PyTorch's default: kaiming-uniform weights, uniform biases
        if m.out_features > 1:
            nn.init.normal_(m.weight, std=1e-4)


def run(variant: str, data, model: str, seed: int) -> float:
    adapter = make_adapter("deepctr" if variant == "deepctr" else "ctrbench", data, model, 256, seed=seed)
    if variant == "no-clip":
        adapter.config = dataclasses.replace(adapter.config, grad_clip=0.0)
    adapter.build()
    if variant == "deepctr-init":
        torch.manual_seed(seed)
        deepctr_init(adapter.model)
    if variant == "summed-loss":
        adapter.trainer.fit(adapter.model, adapter.data, loss_fn=lambda m, b: F.binary_cross_entropy_with_logits(
            m(b).float(), b.y, reduction="sum"))
    else:
        adapter.fit_one_epoch()
    y = np.asarray(data.y[data.splits["test"]])
    return auc(y, adapter.predict("test"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dcn")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = Path(os.environ.get("CTRBENCH_CACHE", Path.home() / ".cache" / "ctrbench"))
    data = load_plugins().registry("datasets").get("movielens-100k").create(history_length=0).load(cache)
    for variant in args.variants:
        aucs = [round(run(variant, data, args.model, s), 4) for s in args.seeds]
        print(f"{variant:14s} {' / '.join(f'{a:.4f}' for a in aucs)}  mean {np.mean(aucs):.4f}", flush=True)


if __name__ == "__main__":
    main()
