"""Gradient-norm clipping: the arithmetic of `torch.nn.utils.clip_grad_norm_`, without its Python.

Why: for a small CTR model the step is mostly per-call overhead, not arithmetic (benchmarks/README.md, "The
overhead regime"), and torch's ``clip_grad_norm_`` spends ~40 µs a call grouping tensors by device and dtype,
checking foreach support and wrapping itself in ``no_grad`` — as much as LR's whole forward pass. With the
engine's flat parameters (`ctrbench.engine.flat`) there is one gradient per optimizer group, so what is left to do
is a norm, a factor and a multiply; measured in the engine, LR trains 18% faster and FM 7%.

Exactness: the same operations in the same order as torch's (one L2 norm per gradient, the L2 norm of their stack,
``max_norm / (total + 1e-6)`` clamped at 1, every gradient multiplied in place by it), so the clipped gradients are
bit for bit torch's (tests/test_engine.py). Sparse tables pass their coalesced values, whose norm is the norm of
the dense gradient they stand for (`ctrbench.engine.sparse`). No ``no_grad`` block: the engine's gradients are
leaves that record no graph (it never calls ``backward(create_graph=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def clip_grad_norm(grads: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale ``grads`` in place so that their joint L2 norm is at most ``max_norm``; return the norm before."""
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    # torch writes ``max_norm / (total + 1e-6)``: Tensor.__rdiv__ is ``reciprocal() * other`` behind a Python
    # wrapper; the same two ops called directly give the same bits
    factor = torch.clamp((total + 1e-6).reciprocal() * max_norm, max=1.0)
    for g in grads:
        g.mul_(factor)
    return total
