"""CELA's text encoder over either PLM family: a masked LM as loaded, or a causal LM with LoRA (Fig. 4's OPT end).

The paper runs Fig. 4 up to OPT-1.3B and says only: "for the OPT model, Causal Language Modeling (CLM) pre-training
loss and LoRA fine-tuning are implemented". So for a causal LM, CELA here

- trains LoRA adapters (peft; r, alpha, dropout and targets are knobs, the family's q/v by default) in DAP and
  ROMA, the base weights frozen;
- uses the causal-LM loss on the item text (every next-token prediction between real tokens) where a masked LM
  uses MLM (the ``mlm`` knob switches "the PLM's own pretraining loss" either way);
- pools the last layer's states by their mean over real tokens (``causal_pooling: mean``; ``last`` takes the
  final token's state). A causal LM has no [CLS]: the paper does not say which it pooled, so this is a knob and
  the mean is the default, as sentence encoders built on decoders commonly use it.

Only the adapters are stored in a stage (a 135M-parameter base would cost 0.5 GB per stage); the base is
rebuilt from the registry, which is deterministic.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ctrbench_cela.config import CELAConfig
from ctrbench_plm.yes_no import masked_mean


def is_causal(plm: Any) -> bool:
    return getattr(plm, "family", "") == "causal_lm"


class CausalTextEncoder(nn.Module):
    """A `CausalLM` (LoRA applied) seen through the masked-LM surface CELA's stages call: ``encode``, ``pooled``,
    ``hidden_size``, ``tokenizer``; plus ``lm_loss`` (CLM) for DAP."""

    family = "causal_lm"

    def __init__(self, lm: Any, pooling: str = "mean") -> None:
        super().__init__()
        self.lm = lm
        self.pooling = pooling

    @property
    def name(self) -> str:
        return self.lm.name

    @property
    def tokenizer(self) -> Any:
        return self.lm.tokenizer

    @property
    def hidden_size(self) -> int:
        return self.lm.hidden_size

    @property
    def device(self) -> torch.device:
        return self.lm.device

    def tokenize(self, texts: Any, max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lm.tokenize(texts, max_length)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden states ``[B, T, H]`` (left-padded input, positions counted over real tokens)."""
        return self.lm._hidden(input_ids, attention_mask)

    def pooled(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, H]``: the mean over real tokens, or the last position (always real under left padding)."""
        return hidden[:, -1] if self.pooling == "last" else masked_mean(hidden, attention_mask)

    def lm_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """CLM cross-entropy, mean over every prediction from a real token to the next real token (None: no text
        has two tokens). The vocabulary projection is applied to those positions only."""
        keep = (attention_mask[:, :-1] * attention_mask[:, 1:]).bool()
        if not keep.any():
            return None
        hidden = self.encode(input_ids, attention_mask)
        head = self.lm.base_model().get_output_embeddings()
        return nn.functional.cross_entropy(head(hidden[:, :-1][keep]).float(), input_ids[:, 1:][keep])

    def tunable_parameters(self) -> list[nn.Parameter]:
        """The LoRA adapters: what DAP and ROMA train."""
        return [p for n, p in self.named_parameters() if "lora_" in n]


def wrap(plm: Any, cfg: CELAConfig, seed: int) -> Any:
    """The PLM as CELA's stages use it: a masked LM unchanged; a causal LM with LoRA adapters added (under
    ``seed``, so every stage that rebuilds it starts from the same adapters) behind `CausalTextEncoder`."""
    if not is_causal(plm):
        if cfg.gradient_checkpointing == "on":
            raise ValueError(f"cela: gradient_checkpointing=on applies to a causal-LM PLM; {plm.name} is a masked LM "
                             "(set it to auto or off)")
        return plm
    plm.add_lora(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                 target_modules=list(cfg.lora_targets) if cfg.lora_targets else None, seed=seed)
    if cfg.gradient_checkpointing != "off":
        plm.enable_gradient_checkpointing()
    return CausalTextEncoder(plm, cfg.causal_pooling)


def tunable_parameters(plm: Any) -> list[nn.Parameter]:
    """What DAP and ROMA may train: the adapters of a causal LM, every weight of a masked LM."""
    if isinstance(plm, CausalTextEncoder):
        return plm.tunable_parameters()
    return list(plm.parameters())


def state(plm: Any) -> dict[str, torch.Tensor]:
    """What a stage saves of the PLM: the adapters of a causal LM, the whole masked LM."""
    if isinstance(plm, CausalTextEncoder):
        return {n: p.detach().cpu() for n, p in plm.named_parameters() if "lora_" in n}
    return plm.state_dict()


def load_state(plm: Any, saved: dict[str, torch.Tensor]) -> None:
    """Inverse of `state`; a causal LM must get exactly its adapters back (a missing one is an error)."""
    if not isinstance(plm, CausalTextEncoder):
        plm.load_state_dict(saved)
        return
    names = {n for n, _ in plm.named_parameters() if "lora_" in n}
    if set(saved) != names:
        raise ValueError(f"cela: stored adapters do not match the PLM's ({len(saved)} vs {len(names)} tensors)")
    missing, unexpected = plm.load_state_dict(saved, strict=False)
    assert not unexpected, unexpected
