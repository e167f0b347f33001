"""The ClickPrompt model pieces: the prompt generator and the CTR+PLM model used for PA-MLM and finetuning.

Shapes follow the masked-LM wrapper of ``ctrbench_plm``: layer-wise prompts are
``[B, num_layers, 2, K, hidden]`` (keys and values per layer, as prefix tuning), first-layer prompts
``[B, K, hidden]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ctrbench.models.base import Batch, CTRBackbone
from ctrbench.text import TokenTable


class PromptGenerator(nn.Module):
    """q [B, H_q] → prompts: a tanh-activated two-layer MLP whose hidden size is the PLM's (§4.1.4).

    The output layer emits all L × 2 × K prompt vectors at once, i.e. one linear head per (layer, k, key/value)
    over a shared tanh hidden layer — the prefix-projection form of the authors' public code.
    """

    def __init__(self, q_dim: int, prompt_shape: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        self.prompt_shape = tuple(prompt_shape)
        out = 1
        for s in self.prompt_shape:
            out *= s
        self.net = nn.Sequential(nn.Linear(q_dim, hidden), nn.Tanh(), nn.Linear(hidden, out))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.net(q).view(q.shape[0], *self.prompt_shape)


def ctr_logit(ctr: CTRBackbone, batch: Batch, q: torch.Tensor) -> torch.Tensor:
    """The backbone's own logit from its hidden state (head + first-order term where the model has one)."""
    logit = ctr.head(q)
    first = ctr.linear_logit(batch)
    return logit if first is None else logit + first


class ClickPromptModel(nn.Module):
    """CTR backbone + prompt generator + PLM, over the dataset's pre-tokenized texts.

    ``tokens`` (a `TokenTable` of every row of the dataset, in compact dtypes on the CPU) is not a module
    buffer: only each batch's rows are gathered onto the model's device, so the device never holds all texts
    (int64 tokens of every MovieLens-1M row at 128 tokens would take 2 GB of GPU memory).
    """

    def __init__(self, ctr: CTRBackbone, plm: Any, tokens: TokenTable, *,
                 num_prompts: int, prompt_mode: str, use_prompt: bool = True, alpha_init: float = 0.5) -> None:
        super().__init__()
        self.ctr = ctr
        self.plm = plm
        self.prompt_mode = prompt_mode
        self.use_prompt = use_prompt
        self.generator = PromptGenerator(ctr.hidden_dim, plm.prompt_shape(num_prompts, prompt_mode),
                                         plm.hidden_size)
        h = plm.hidden_size
        self.plm_head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))  # MLP(Pooling(·)), Eq. 9
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.tokens = tokens

    def text(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's token ids and mask, trimmed to its longest text (less padding to encode)."""
        return self.tokens.gather(batch.idx, self.alpha.device, trim=True)

    def hidden_and_prompts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.ctr.interact(self.ctr.embed(batch))
        return q, self.generator(q)

    def mlm_loss(self, batch: Batch, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """PA-MLM: recover the selected tokens from the corrupted text and the ID features' prompts."""
        _, prompts = self.hidden_and_prompts(batch)
        hidden = self.plm.encode(ids, mask, prompts, self.prompt_mode)
        selected = labels != -100
        logits = self.plm.mlm_head(hidden[selected])  # score only the selected positions
        return nn.functional.cross_entropy(logits.float(), labels[selected])

    def parts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_ctr, y_plm) logits of Eq. 9."""
        q, prompts = self.hidden_and_prompts(batch)
        ids, mask = self.text(batch)
        hidden = self.plm.encode(ids, mask, prompts if self.use_prompt else None, self.prompt_mode)
        y_plm = self.plm_head(self.plm.pooled(hidden, mask)).squeeze(-1)
        return ctr_logit(self.ctr, batch, q), y_plm

    def forward(self, batch: Batch) -> torch.Tensor:
        """The fused logit α·y_ctr + (1 − α)·y_plm (Eq. 9; σ is applied by the loss / at prediction)."""
        y_ctr, y_plm = self.parts(batch)
        return self.alpha * y_ctr + (1 - self.alpha) * y_plm
