"""Contiguous parameters for the optimizer: each AdamW group's tensors as views of one flat tensor.

Why: a small CTR model's step is dominated by per-tensor work, not arithmetic (benchmarks/README.md, "The
overhead regime"). The fused AdamW's Python walks every tensor of every group, gradient clipping takes one
norm per tensor (the CPU has no fused multi-tensor norm) and ``zero_grad`` touches each gradient. With the
tensors of a group laid out in one flat tensor, and their gradients in another, the optimizer, the clipping
norm and the zeroing each see one tensor.

Exactness: AdamW is elementwise, so one flat tensor gets the very updates the separate tensors got. Two things
differ and are why the engine checks before it flattens (`FlatGroups.applies`): a parameter that gets no
gradient in a step is skipped by AdamW when its ``grad`` is None, while a flat gradient is never None (its
slice would be zero and AdamW would still decay the moments); so the engine flattens a phase only after a
first step in which every trainable parameter got a dense gradient of its own dtype and device — a CTR
backbone's static graph, not a PLM whose pooler is unused. And clipping's total norm is summed in another
order (the clipped update can differ in the last bits).

The views live only while a phase's epochs run (`attach` ... `detach`): afterwards every parameter owns its
storage again, so a later phase, a checkpoint or a method that shares a parameter with another phase sees
ordinary tensors. The flat tensors (and the optimizer state keyed by them) persist across alternation rounds.
"""

from __future__ import annotations

import torch
from torch import nn


class FlatGroups:
    """One flat parameter (and gradient) per optimizer group; swaps itself into the optimizer's groups."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.members: list[list[nn.Parameter]] = [list(g["params"]) for g in optimizer.param_groups]
        self.flats: list[nn.Parameter] = []
        for params in self.members:
            flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
            # built right after the first backward: its gradients are the first step's
            flat.grad = torch.cat([p.grad.reshape(-1) for p in params])
            self.flats.append(flat)
        self.attached = False

    @staticmethod
    def applies(optimizer: torch.optim.Optimizer) -> bool:
        """True when every trainable parameter holds a dense gradient of its own dtype and device (checked
        after a backward pass), all on one device and dtype, and the optimizer has taken no step yet."""
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if not params or optimizer.state:
            return False
        first = params[0]
        return all(p.grad is not None and not p.grad.is_sparse and p.grad.dtype == p.dtype == first.dtype
                   and p.device == first.device and p.grad.device == p.device for p in params)

    def attach(self) -> None:
        """Copy the parameters' current values into the flat tensors and make them views of it."""
        if self.attached:
            return
        for group, params, flat in zip(self.optimizer.param_groups, self.members, self.flats, strict=True):
            offset = 0
            with torch.no_grad():
                for p in params:
                    n = p.numel()
                    flat[offset:offset + n].copy_(p.detach().reshape(-1))
                    offset += n
            offset = 0
            for p in params:
                n = p.numel()
                p.data = flat.data[offset:offset + n].view_as(p)
                # a defined grad is accumulated into in place by autograd: each backward lands in flat.grad
                p.grad = flat.grad[offset:offset + n].view_as(p)
                offset += n
            group["params"] = [flat]
        self.attached = True

    def detach(self) -> None:
        """Give every parameter its own storage again (values kept; gradients dropped)."""
        if not self.attached:
            return
        for group, params in zip(self.optimizer.param_groups, self.members, strict=True):
            for p in params:
                p.data = p.data.clone()
                p.grad = None
            group["params"] = params
        self.attached = False

    def trainable(self) -> list[nn.Parameter]:
        return list(self.flats) if self.attached else [p for params in self.members for p in params]

    def zero_grad(self) -> None:
        for flat in self.flats:
            assert flat.grad is not None
            flat.grad.zero_()
