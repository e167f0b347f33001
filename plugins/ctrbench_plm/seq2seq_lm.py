"""`Seq2SeqLM`: a T5 encoder-decoder that answers a prompt with "Yes" or "No" (TallRec / SLLM4CTR on T5).

The same interface as ``CausalLM`` (``ctrbench_plm.yes_no``), computed the encoder-decoder way:

- the encoder reads the prompt, right-padded (T5's positions are relative, so padding on either side leaves a
  prompt's encoding unchanged) and left-truncated (a too-long prompt loses its oldest history, not its question;
  T5's closing ``</s>`` is kept);
- the decoder gets only the decoder start token (T5: the pad token) and cross-attends to the prompt's real tokens;
  ``(l_no, l_yes)`` are the LM head's scores of the two answer tokens at that first decoder step, computed from
  two rows of the output embedding, never the whole vocabulary. T5 multiplies the decoder output by
  ``d_model ** -0.5`` before the head when its config says so (``scale_decoder_outputs`` in transformers 5,
  ``tie_word_embeddings`` before: original T5 yes, T5 v1.1 / FLAN-T5 no); so does ``forward``, to match
  ``T5ForConditionalGeneration`` exactly;
- ``click`` (SLLM4CTR's ``e_L``) is the decoder's last-layer hidden state at that step (before the scaling);
  ``prompt`` (its ``e_c``) is the mean of the encoder's last hidden states over the prompt's real tokens;
- ``lm_loss`` (TALLRec's objective on T5) is the decoder's cross-entropy on the response (answer, ``</s>``) with
  teacher forcing (decoder input: start token, answer), what ``T5ForConditionalGeneration(labels=...)`` computes;
  only ``scope="response"`` exists: an encoder-decoder does not predict its input, so "the whole sequence" has
  no meaning here.

Only ``model_type == "t5"`` checkpoints are accepted (T5, T5 v1.1, FLAN-T5): the output scaling differs between
T5-like architectures and transformers releases (mT5 never scales in 5.x), and an unchecked guess would give
scores that silently differ from the model's own. LoRA goes through peft with ``TaskType.SEQ_2_SEQ_LM``;
T5 names its attention projections ``q``, ``k``, ``v``, ``o`` (default targets: ``q``, ``v``, in the encoder's
self-attention and the decoder's self- and cross-attention).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctrbench.errors import PluginError
from ctrbench_plm.loading import load_pretrained
from ctrbench_plm.yes_no import YesNoLM, YesNoOutput, answer_logits, masked_mean, random_word_tokenizer

SUPPORTED_MODEL_TYPES = ("t5",)


class Seq2SeqLM(YesNoLM):
    """A ``T5ForConditionalGeneration`` + tokenizer, scored on two answer tokens at the first decoder step
    (default "Yes" / "No": T5's sentencepiece vocabulary has ``▁Yes`` and ``▁No`` as single tokens)."""

    family = "seq2seq_lm"
    lora_task_type = "SEQ_2_SEQ_LM"
    default_lora_targets = ("q", "v")

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str = "",
                 answer_tokens: Sequence[str] = ("Yes", "No"), loading_info: dict[str, Any] | None = None) -> None:
        config = model.config
        model_type = getattr(config, "model_type", type(model).__name__)
        if model_type not in SUPPORTED_MODEL_TYPES or not getattr(config, "is_encoder_decoder", False):
            raise PluginError(f"PLM '{name}': Seq2SeqLM takes T5 encoder-decoders (model_type "
                              f"{SUPPORTED_MODEL_TYPES}); got model_type {model_type!r} ({type(model).__name__})")
        super().__init__(model, tokenizer, name=name, answer_tokens=answer_tokens, loading_info=loading_info)
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "left"
        start = config.decoder_start_token_id
        if start is None:
            start = config.pad_token_id  # T5's convention
        if start is None:
            raise PluginError(f"PLM '{name}': the config has neither decoder_start_token_id nor pad_token_id")
        self.decoder_start_id = int(start)
        scale = getattr(config, "scale_decoder_outputs", None)  # transformers >= 5
        if scale is None:
            scale = getattr(config, "tie_word_embeddings", True)  # what T5 read before
        self.output_scale = float(config.d_model) ** -0.5 if scale else 1.0

    # -- text ---------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded to the longest prompt of the batch, left-truncated to ``max_length`` tokens (the
        tokenizer's own special tokens, e.g. T5's closing ``</s>``, included and kept)."""
        enc = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length,
                             return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    # -- forward ------------------------------------------------------------------------------------
    def _run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
             follow: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, YesNoOutput]:
        """(encoder states, decoder states, output at the first decoder step); the decoder reads the start token
        then ``follow`` ``[B, R']`` (teacher forcing)."""
        base = self.base_model()
        encoded = base.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        start = torch.full((input_ids.shape[0], 1), self.decoder_start_id, dtype=torch.long, device=input_ids.device)
        decoder_ids = start if follow is None else torch.cat([start, follow.to(start.device)], dim=1)
        decoded = base.get_decoder()(input_ids=decoder_ids, encoder_hidden_states=encoded,
                                     encoder_attention_mask=attention_mask, use_cache=False).last_hidden_state
        click = decoded[:, 0]
        logits = answer_logits(click * self.output_scale, base.get_output_embeddings(), (self.no_id, self.yes_id))
        return encoded, decoded, YesNoOutput(logits, click, masked_mean(encoded, attention_mask))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> YesNoOutput:
        """``input_ids``, ``attention_mask``: ``[B, T]`` -> logits ``[B, 2]`` (l_no, l_yes), click and prompt
        ``[B, d_model]``."""
        return self._run(input_ids, attention_mask)[2]

    def lm_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_ids: torch.Tensor,
                scope: str = "response") -> tuple[torch.Tensor, YesNoOutput]:
        """Decoder cross-entropy (mean over the response tokens) of ``response_ids`` ``[B, R]`` given the prompts,
        and the `YesNoOutput` at the first decoder step (the answer's); see the module docstring."""
        if scope != "response":
            raise PluginError(f"PLM '{self.name}': an encoder-decoder has no loss on the whole sequence (scope "
                              f"{scope!r}); use the response loss (method loss: lm_response) or a causal LM")
        response_ids = response_ids.to(input_ids.device)
        _, decoded, out = self._run(input_ids, attention_mask, response_ids[:, :-1])
        logits = self.base_model().get_output_embeddings()(decoded * self.output_scale).float()  # [B, R, V]
        return nn.functional.cross_entropy(logits.flatten(0, 1), response_ids.flatten()), out


# -- loading ----------------------------------------------------------------------------------------

def load_seq2seq_lm(source: str | Path, *, name: str, local: bool, dtype: str = "float32",
                    answer_tokens: Sequence[str] = ("Yes", "No")) -> Seq2SeqLM:
    """``AutoModelForSeq2SeqLM`` + ``AutoTokenizer`` from a folder laid out like the hub's (``local=True``: never
    a network call) or from a hub id."""
    from transformers import AutoModelForSeq2SeqLM

    model, tokenizer, info = load_pretrained(AutoModelForSeq2SeqLM, source, name=name, local=local, dtype=dtype)
    return Seq2SeqLM(model, tokenizer, name=name, answer_tokens=answer_tokens, loading_info=info)


# -- a random tiny model for tests and CI -------------------------------------------------------------

def random_t5(*, seed: int = 0, d_model: int = 32, d_kv: int = 16, d_ff: int = 64, num_layers: int = 2,
              num_decoder_layers: int | None = None, num_heads: int = 2, feed_forward_proj: str = "gated-gelu",
              tie_word_embeddings: bool = False, dropout_rate: float = 0.1) -> Seq2SeqLM:
    """A randomly initialised tiny ``T5ForConditionalGeneration`` for tests and CPU smoke runs; no files, no
    network, deterministic in ``seed``.

    The tokenizer is the word-level one of ``random-llama`` (``yes_no.random_word_tokenizer``), made to close
    every text with ``</s>`` as T5's does: no T5 sentencepiece model is available offline (SOURCES.md lists
    none), and a random model needs no real vocabulary, only single-token "Yes"/"No" and a pad token for the
    decoder start. The vocabulary is sized to that tokenizer (``len(tokenizer)``, ~140 words) rather than T5's
    32,128, so the embedding and LM head stay a few thousand parameters and every id the tokenizer emits has a
    row. Special ids follow the tokenizer (pad 0 = decoder start, as in T5; eos 3).

    Defaults mirror FLAN-T5 (T5 v1.1: gated-GELU feed-forward, no output scaling); ``tie_word_embeddings=True``
    gives original T5's ``d_model ** -0.5`` scaling of the decoder output before the LM head.
    """
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = random_word_tokenizer(append_eos=True)
    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=d_kv, d_ff=d_ff, num_layers=num_layers,
                      num_decoder_layers=num_decoder_layers, num_heads=num_heads,
                      feed_forward_proj=feed_forward_proj, tie_word_embeddings=tie_word_embeddings,
                      dropout_rate=dropout_rate,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
    model.eval()
    return Seq2SeqLM(model, tokenizer, name="random-t5", loading_info={"source": "random", "seed": seed})
