"""Token corruption for masked language modelling (BERT's recipe; ClickPrompt §3.5.1 PA-MLM, CELA's domain-adaptive
pretraining).

15% of the *text* tokens of each input are selected (special tokens and padding never are); of those 80%
become [MASK], 10% a random token and 10% stay unchanged; the loss is computed on the selected positions only.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

IGNORE = -100


def maskable(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: Iterable[int]) -> torch.Tensor:
    """``[B, T]`` bool: the positions `mask_tokens` may select, real tokens (``attention_mask``) that are not
    special (``special_ids``, e.g. ``tokenizer.all_special_ids``: [CLS], [SEP], [PAD], ...)."""
    special = torch.tensor(sorted(set(special_ids)), dtype=input_ids.dtype, device=input_ids.device)
    return attention_mask.bool() & ~torch.isin(input_ids, special)


def mask_tokens(input_ids: torch.Tensor, maskable: torch.Tensor, *, mask_token_id: int, vocab_size: int,
                mask_prob: float = 0.15, generator: torch.Generator | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``input_ids`` [B, T]; ``maskable`` [B, T] bool marks text tokens that may be selected.

    Returns ``(corrupted_ids, labels)`` where ``labels`` holds the original id at selected positions and
    ``IGNORE`` elsewhere. The random draws are made on the CPU from ``generator`` (three per call, in a fixed
    order: selection, action, random ids), so a seed gives the same corruption on every device.
    """
    device = input_ids.device
    draw = lambda: torch.rand(input_ids.shape, generator=generator).to(device)  # noqa: E731
    selected = (draw() < mask_prob) & maskable
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE))
    action = draw()
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator).to(device)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    corrupted = torch.where(to_random, random_ids, corrupted)
    return corrupted, labels
