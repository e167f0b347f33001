"""Stage 2 of CELA (Wang et al., §4.2): recommendation-oriented modal alignment, at the item level.

    e_iⁿ = x^{i,n} E^i                     (Eq. 8: the item's field embeddings from the ID model, concatenated, frozen)
    e_iᵗ = PLM(x^{i,t}) W + b              (Eq. 9: [CLS] state through the projection head, units [128, f_i·d])
    L_tn = −1/|I| Σ_i log softmax_k(sim(e_iᵗ, e_kⁿ)/τ₂)_i    (Eq. 10, in-batch negatives, sim = inner product)
    L_nt = −1/|I| Σ_i log softmax_k(sim(e_iⁿ, e_kᵗ)/τ₂)_i    (Eq. 11)
    L_ROMA = L_tn + L_nt                                     (Eq. 12)

Only the PLM and the head train; e_iⁿ is a detached copy of the ID model's rows, so the ID model is untouched.
Batches are unique item indices (an epoch is a permutation of the aligned items), so no item is its own negative.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctrbench.context import RunContext
from ctrbench.engine import IndexSource
from ctrbench.models.layers import MLP
from ctrbench.text import TokenTable, info_nce
from ctrbench_cela.config import CELAConfig
from ctrbench_cela.dap import sentence
from ctrbench_cela.encoder import state, tunable_parameters


class ProjectionHead(nn.Module):
    """Eq. 9's W, b as the paper's projection units: [H] → hidden (ReLU) → f_i·d, optionally LayerNorm'd (the
    authors' code). float[B, H] → float[B, f_i·d]."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, layernorm: bool = False) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, hidden)
        self.out = nn.Linear(self.mlp.output_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim) if layernorm else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(self.out(self.mlp(h)))


def id_item_table(ctr: nn.Module, feature_index: np.ndarray, fields: list[str]) -> torch.Tensor:
    """Eq. 8 for every item: float[V, f_i·d], the concatenated rows of ``fields`` (detached copies)."""
    with torch.no_grad():
        idx = torch.as_tensor(feature_index, device=ctr.embedding.weight.device)
        parts = [ctr.embedding.lookup(f, idx[:, j]) for j, f in enumerate(fields)]
        return torch.cat(parts, dim=-1).detach().clone().float()


def roma_loss(e_t: torch.Tensor, e_n: torch.Tensor, similarity: str = "inner", tau: float = 1.0) -> torch.Tensor:
    """Eq. 12: L_tn + L_nt over a batch of B items ([B, D] each). `info_nce` returns their mean, hence × 2."""
    return 2 * info_nce(e_t, e_n, tau, symmetric=True, normalize=similarity == "cosine")


class Aligner(nn.Module):
    """PLM + projection head; ``raw`` (ROMA w/o PLM) replaces the PLM by its cached [CLS] table."""

    def __init__(self, plm: Any, head: ProjectionHead, tokens: TokenTable, raw: torch.Tensor | None = None) -> None:
        super().__init__()
        self.plm = plm
        self.head = head
        self.tokens = tokens
        self.raw: torch.Tensor | None
        if raw is None:
            self.raw = None
        else:
            self.register_buffer("raw", raw.float(), persistent=False)  # follows the head to the device

    def text(self, idx: torch.Tensor) -> torch.Tensor:
        """PLM(x^{i,t}): float[B, H] for item indices ``idx``."""
        if self.raw is not None:
            return self.raw[idx.to(self.raw.device)]
        device = self.head.out.weight.device
        ids, mask = self.tokens.gather(idx, device, trim=True)
        return sentence(self.plm)(ids, mask)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """e_iᵗ (Eq. 9): float[B, f_i·d]."""
        return self.head(self.text(idx).float())


@torch.no_grad()
def encode_items(plm: Any, tokens: TokenTable, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """The text-embedding table: every item's [CLS] state, float[V, H] on the CPU (row 0, unknown, is zeros).
    Each item is encoded exactly once, in eval mode (no dropout)."""
    plm.eval()
    out = torch.zeros(len(tokens), plm.hidden_size)
    encode = sentence(plm)
    for start in range(1, len(tokens), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(tokens)))
        ids, mask = tokens.gather(idx, device, trim=True)
        out[idx] = encode(ids, mask).float().cpu()
    return out


@torch.no_grad()
def retrieval(aligner: Aligner, id_table: torch.Tensor, items: torch.Tensor, similarity: str = "inner",
              k: int = 10, batch_size: int = 256) -> dict[str, float]:
    """ROMA's own diagnostic: does an item's projected text find its ID row among all ``items``' rows?

    For each item, the rank of its e_iⁿ among the N candidates by sim(e_iᵗ, ·) (ties count against it):
    recall@k and mean reciprocal rank, with chance k/N. An unaligned head sits at chance; alignment that works
    lifts recall on the items it trained on and, if it generalises, on items it never saw (popular-only runs).
    """
    aligner.eval()
    device = aligner.head.out.weight.device
    e_t = torch.cat([aligner(items[s:s + batch_size].to(device)).float().cpu()
                     for s in range(0, len(items), batch_size)])
    e_n = id_table[items.cpu()].float().cpu()
    if similarity == "cosine":
        e_t, e_n = nn.functional.normalize(e_t, dim=-1), nn.functional.normalize(e_n, dim=-1)
    sims = e_t @ e_n.T
    ranks = (sims > sims.diagonal()[:, None]).sum(1) + (sims == sims.diagonal()[:, None]).sum(1) - 1
    n = len(items)
    return {f"recall@{k}": float((ranks < k).float().mean()), "mrr": float((1.0 / (ranks + 1)).mean()),
            "items": n, f"chance@{k}": min(1.0, k / n)}


def align(ctx: RunContext, aligner: Aligner, id_table: torch.Tensor, items: torch.Tensor,
          cfg: CELAConfig) -> dict[str, Any]:
    """One ROMA pass (``roma_epochs`` over ``items``): the PLM at ``roma_lr`` (unless ``roma_plm`` is off or the
    PLM is replaced by its table) and the head at ``proj_lr``. Returns the phase's report as a dict."""
    aligner.to(ctx.device)
    e_n = id_table.to(ctx.device)

    def loss(idx: torch.Tensor) -> torch.Tensor | None:
        if len(idx) < 2:  # a lone item has no negative
            return None
        idx = idx.to(ctx.device)
        return roma_loss(aligner(idx), e_n[idx], cfg.similarity, cfg.tau2)

    groups: list[dict[str, Any]] = [{"params": list(aligner.head.parameters()), "lr": cfg.proj_lr}]
    plm_trains = cfg.roma_plm and aligner.raw is None
    tunable = tunable_parameters(aligner.plm)  # a causal LM's LoRA adapters, else the whole PLM
    for p in tunable:
        p.requires_grad_(plm_trains)
    if plm_trains:
        groups.append({"params": tunable, "lr": cfg.roma_lr})
    phase = ctx.trainer.phase("CELA-ROMA", IndexSource(items, cfg.roma_batch_size), loss, groups, model=aligner,
                              epochs=cfg.roma_epochs, lr=cfg.roma_lr, weight_decay=0.0, schedule=cfg.roma_schedule,
                              warmup=0.0, regularizer=None)
    every = torch.arange(1, len(id_table))  # all items (row 0 is the unknown item)
    before = retrieval(aligner, e_n, every, cfg.similarity)
    report = ctx.trainer.engine.run(phase)
    after = retrieval(aligner, e_n, every, cfg.similarity)
    for p in tunable:
        p.requires_grad_(True)
    aligner.eval()
    return {"seconds": report.train_seconds, "steps": report.steps, "history": report.history,
            "items": len(items), "plm_trained": plm_trains,
            "retrieval_before": before, "retrieval_after": after}


def save(out_dir: Path, aligner: Aligner, table: torch.Tensor, info: dict[str, Any]) -> None:
    torch.save(state(aligner.plm), out_dir / "plm.pt")
    torch.save(aligner.head.state_dict(), out_dir / "head.pt")
    torch.save(table, out_dir / "table.pt")
    (out_dir / "roma.json").write_text(json.dumps(info, indent=2))
