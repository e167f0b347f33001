"""`CausalLM`: a decoder-only language model that answers a prompt with " Yes" or " No" (TallRec, SLLM4CTR).

What the methods need from it, and why it is computed this way:

- the two next-token scores ``l_no``, ``l_yes`` at the last position only: the LM head is applied to one
  hidden vector per prompt and two rows of the output embedding, never to the whole vocabulary (a
  49k-vocabulary head on every position costs more than the rest of a step on a CPU);
- the last layer's hidden state at that position (SLLM4CTR's click embedding ``e_L``) and the mean of the last
  layer's hidden states over the prompt's real tokens (its prompt embedding ``e_c``, template tokens included
  as the paper does);
- left padding and left truncation, so the answer position is always the last one and a too-long prompt
  loses its oldest history rather than its question;
- for TALLRec's objective (`lm_loss`), the response tokens (answer + EOS, the same count for every prompt) are
  appended after the left-padded prompts, so the answer position stays the prompt's last one; the full LM head
  is applied to the positions the loss covers only (the R response predictions, or every real position for
  ``scope="full"``).

LoRA is applied through peft (`add_lora`), which freezes every base weight; the model itself is never forked.
What this family shares with `Seq2SeqLM` (the output type, answer-token ids, LoRA, checkpointing) is in `yes_no`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctrbench.atomic import atomic_directory
from ctrbench.errors import DataError
from ctrbench_plm.loading import load_pretrained
from ctrbench_plm.yes_no import (  # noqa: F401  (YesNoOutput, single_token_id, random_word_tokenizer: re-exported)
    YesNoLM,
    YesNoOutput,
    answer_logits,
    masked_mean,
    random_word_tokenizer,
    single_token_id,
)

log = logging.getLogger(__name__)

# Written last into a converted checkpoint folder: a folder without it is a half-written conversion.
COMPLETE_MARKER = ".ctrbench-complete"


class CausalLM(YesNoLM):
    """A ``*ForCausalLM`` model + tokenizer, scored on two answer tokens (default " Yes" / " No")."""

    family = "causal_lm"
    lora_task_type = "CAUSAL_LM"
    default_lora_targets = ("q_proj", "v_proj")

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str = "",
                 answer_tokens: Sequence[str] = (" Yes", " No"), loading_info: dict[str, Any] | None = None) -> None:
        super().__init__(model, tokenizer, name=name, answer_tokens=answer_tokens, loading_info=loading_info)
        tokenizer.padding_side = "left"
        tokenizer.truncation_side = "left"

    # -- text ---------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded to the longest prompt of the batch, left-truncated to ``max_length`` tokens."""
        enc = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length,
                             return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    # -- forward ------------------------------------------------------------------------------------
    def _hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden states ``[B, T, H]`` (after its final norm: what the LM head reads)."""
        # Positions count real tokens only, so a left-padded prompt gets the positions it has unpadded.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.base_model().get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                               position_ids=position_ids, use_cache=False).last_hidden_state

    def _output(self, hidden: torch.Tensor, attention_mask: torch.Tensor, answer_at: int) -> YesNoOutput:
        click = hidden[:, answer_at]
        logits = answer_logits(click, self.base_model().get_output_embeddings(), (self.no_id, self.yes_id))
        return YesNoOutput(logits, click, masked_mean(hidden[:, :answer_at + 1], attention_mask))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> YesNoOutput:
        return self._output(self._hidden(input_ids, attention_mask), attention_mask, input_ids.shape[1] - 1)

    def lm_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_ids: torch.Tensor,
                scope: str = "response") -> tuple[torch.Tensor, YesNoOutput]:
        """Causal-LM cross-entropy (mean over the tokens it covers) of the prompts ``[B, T]`` (left-padded, as
        `tokenize` gives them) followed by ``response_ids`` ``[B, R]``, and the `YesNoOutput` at the answer
        position (the prompt's last token: identical to ``forward`` on the prompts alone, as attention is causal).

        ``scope="response"``: the R predictions of the response tokens (TALLRec's objective, alpaca-lora's
        ``train_on_inputs=False``); ``"full"``: every next-token prediction from a real token to a real token of
        prompt + response (``train_on_inputs=True``; padding neither predicts nor is predicted).
        """
        if scope not in ("response", "full"):
            raise ValueError(f"lm_loss scope must be 'response' or 'full', got {scope!r}")
        response_ids = response_ids.to(input_ids.device)
        ids = torch.cat([input_ids, response_ids], dim=1)
        mask = torch.cat([attention_mask, torch.ones_like(response_ids, dtype=attention_mask.dtype)], dim=1)
        hidden = self._hidden(ids, mask)
        prompt_len = input_ids.shape[1]
        out = self._output(hidden[:, :prompt_len], attention_mask, prompt_len - 1)
        head = self.base_model().get_output_embeddings()
        if scope == "response":
            logits = head(hidden[:, prompt_len - 1:-1]).float()  # [B, R, V]: position t predicts token t + 1
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), response_ids.flatten())
        else:
            keep = (mask[:, :-1] * mask[:, 1:]).bool()  # from a real token to a real token
            loss = nn.functional.cross_entropy(head(hidden[:, :-1][keep]).float(), ids[:, 1:][keep])
        return loss, out


# -- loading ----------------------------------------------------------------------------------------

def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_causal_lm(source: str | Path, *, name: str, local: bool, dtype: str = "float32",
                   answer_tokens: Sequence[str] = (" Yes", " No")) -> CausalLM:
    """``AutoModelForCausalLM`` + ``AutoTokenizer`` from a folder laid out like the hub's (``local=True``: never
    a network call) or from a hub id."""
    from transformers import AutoModelForCausalLM

    model, tokenizer, info = load_pretrained(AutoModelForCausalLM, source, name=name, local=local, dtype=dtype)
    return CausalLM(model, tokenizer, name=name, answer_tokens=answer_tokens, loading_info=info)


def gguf_to_float_checkpoint(gguf: Path, dest: Path, name: str) -> Path:
    """De-quantise a GGUF file once into a float32 ``save_pretrained`` folder at ``dest`` (atomically).

    transformers' GGUF loader takes ~40 s and 2–3 GB for a 135M model; the float copy reloads in under a
    second. The loader marks the model as quantised, which ``save_pretrained`` refuses, so the marks are
    dropped first: the weights are already plain float tensors by then.
    """
    if (dest / COMPLETE_MARKER).exists():
        return dest
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    log.info("PLM '%s': de-quantising %s once into %s", name, gguf.name, dest)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, ImportError) as exc:
        raise DataError(f"PLM '{name}': could not read GGUF file {gguf}: {exc}") from exc
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_directory(dest) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / COMPLETE_MARKER).write_text(f"from {gguf.name}\n")
    return dest


# -- a random tiny model for tests and CI -------------------------------------------------------------

def random_llama(*, seed: int = 0, hidden_size: int = 32, num_layers: int = 2, num_heads: int = 2,
                 num_kv_heads: int = 1, intermediate_size: int = 64, max_positions: int = 256) -> CausalLM:
    """A randomly initialised tiny ``LlamaForCausalLM`` (SmolLM2's architecture, grouped-query attention, tied
    embeddings) with a word-level tokenizer: for tests and CI. Deterministic in ``seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = random_word_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                         num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
                         intermediate_size=intermediate_size, max_position_embeddings=max_positions,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    return CausalLM(model, tokenizer, name="random-llama", loading_info={"source": "random", "seed": seed})
