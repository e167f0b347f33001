"""AdamW's fused kernel called without `torch.optim`'s per-step Python.

Why: for a small CTR model the optimizer's wrapper costs as much as its kernel. Each ``AdamW.step`` enters a
profiler ``record_function``, walks the step hooks, switches grad mode, checks for dynamo, rebuilds the lists of
parameters, gradients and state, and groups them by device and dtype, before it calls ``torch._fused_adamw_``
once a group. Calling that kernel directly, with the same tensors, trains LR 33%, FM 14% and DeepFM 256-128 4%
faster in the engine (benchmarks/README.md, "After the direct fused AdamW step").

Exactness: the same kernel, with the same arguments, on the very state tensors torch keeps in
``optimizer.state``. Parameters, moments and step counts come out bit for bit torch's, and the optimizer's
``state_dict`` stays torch's (tests/test_fused_step.py). The first step always goes through torch's own ``step``,
which creates the state the way torch does (and marks the step for LR schedulers). After that a step goes
through torch again whenever this shortcut does not apply: a tensor learning rate, a step hook, a parameter
without state yet, sparse or mixed-dtype gradients. Optimizers configured in ways this module does not mirror
(not fused, amsgrad, maximize, capturable, differentiable, a grad scaler) never take the shortcut.

The kernel is a private torch operator: if a torch release renames it, `supports` turns the shortcut off and
torch's step runs as before.
"""

from __future__ import annotations

import torch
from torch.optim import optimizer as optimizer_module

_KERNELS = {True: getattr(torch, "_fused_adamw_", None), False: getattr(torch, "_fused_adam_", None)}


class DirectFusedStep:
    """Steps one fused Adam/AdamW by calling its kernel; falls back to ``optimizer.step()`` step by step."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.direct_steps = 0  # how many steps took the shortcut (for tests and diagnostics)

    @staticmethod
    def supports(optimizer: torch.optim.Optimizer) -> bool:
        """Whether the optimizer's configuration is one whose fused step this module reproduces."""
        if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW):
            return False
        for group in optimizer.param_groups:
            if not group.get("fused") or group.get("amsgrad") or group.get("maximize"):
                return False
            if group.get("capturable") or group.get("differentiable"):
                return False
            if _KERNELS[_decoupled(optimizer, group)] is None:
                return False
        return True

    def step(self) -> None:
        calls = self._kernel_calls()
        if calls is None:
            self.optimizer.step()
            return
        for kernel, params, grads, exp_avgs, exp_avg_sqs, steps, group in calls:
            torch._foreach_add_(steps, 1)
            beta1, beta2 = group["betas"]
            kernel(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=group["lr"], beta1=beta1, beta2=beta2,
                   weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False, maximize=False)
        self.direct_steps += 1

    def _kernel_calls(self) -> list[tuple] | None:
        """One kernel call per group, as torch makes them; None where this step must be torch's."""
        opt = self.optimizer
        if opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks:
            return None
        if optimizer_module._global_optimizer_pre_hooks or optimizer_module._global_optimizer_post_hooks:
            return None
        calls = []
        for group in opt.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if isinstance(group["lr"], torch.Tensor) or isinstance(group["betas"][0], torch.Tensor):
                return None
            first = params[0]
            states = []
            for p in params:
                state = opt.state.get(p)
                if (not state or p.grad.is_sparse or p.grad.dtype != p.dtype or p.dtype != first.dtype
                        or p.device != first.device):
                    return None
                states.append(state)
            calls.append((_KERNELS[_decoupled(opt, group)], params, [p.grad for p in params],
                          [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                          [s["step"] for s in states], group))
        return calls


def _decoupled(optimizer: torch.optim.Optimizer, group: dict) -> bool:
    return bool(group.get("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW)))
