"""`CausalLM`: a decoder-only language model that answers a prompt with " Yes" or " No" (TallRec, SLLM4CTR).

What the methods need from it, and why it is computed this way:

- the two next-token scores ``l_no``, ``l_yes`` at the last position only: the LM head is applied to one
  hidden vector per prompt and two rows of the output embedding, never to the whole vocabulary (a
  49k-vocabulary head on every position costs more than the rest of a step on a CPU);
- the last layer's hidden state at that position (SLLM4CTR's click embedding ``e_L``) and the mean of the last
  layer's hidden states over the prompt's real tokens (its prompt embedding ``e_c``, template tokens included
  as the paper does);
- left padding and left truncation, so the answer position is always the last one and a too-long prompt
  loses its oldest history rather than its question.

LoRA is applied through peft (`add_lora`), which freezes every base weight; the model itself is never forked.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctrbench.atomic import atomic_directory
from ctrbench.errors import DataError, PluginError
from ctrbench_plm.loading import loading_errors, resolve_source

log = logging.getLogger(__name__)

# Written last into a converted checkpoint folder: a folder without it is a half-written conversion.
COMPLETE_MARKER = ".ctrbench-complete"


@dataclass
class YesNoOutput:
    """Scores and embeddings of one batch of prompts."""

    logits: torch.Tensor  # [B, 2]: (l_no, l_yes)
    click: torch.Tensor  # [B, H]: last layer, last (answer) position — SLLM4CTR's e_L
    prompt: torch.Tensor  # [B, H]: last layer, mean over real tokens — SLLM4CTR's e_c

    @property
    def margin(self) -> torch.Tensor:
        """l_yes - l_no: p_yes = sigmoid(margin), the two-way softmax over (No, Yes)."""
        return self.logits[:, 1] - self.logits[:, 0]


def single_token_id(tokenizer: Any, word: str, name: str) -> int:
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1:
        raise PluginError(f"PLM '{name}': the answer {word!r} is {len(ids)} tokens ({ids}) for this tokenizer; "
                          "Yes/No scoring needs one token each (pass answer_tokens=... with single-token words)")
    return int(ids[0])


class CausalLM(nn.Module):
    """A ``*ForCausalLM`` model + tokenizer, scored on two answer tokens (default " Yes" / " No")."""

    family = "causal_lm"

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str = "",
                 answer_tokens: Sequence[str] = (" Yes", " No"), loading_info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.loading_info = loading_info or {}
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        tokenizer.truncation_side = "left"
        yes, no = answer_tokens
        self.yes_id = single_token_id(tokenizer, yes, name)
        self.no_id = single_token_id(tokenizer, no, name)
        self.lora_config: dict[str, Any] | None = None

    # -- properties ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def hidden_size(self) -> int:
        return int(self.base_model().config.hidden_size)

    def base_model(self) -> nn.Module:
        """The ``*ForCausalLM`` module (under peft's wrapper when LoRA is on)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- LoRA ---------------------------------------------------------------------------------------
    def add_lora(self, r: int = 8, alpha: int = 16, dropout: float = 0.05,
                 target_modules: Sequence[str] = ("q_proj", "v_proj"), seed: int = 0) -> int:
        """Wrap the model with peft LoRA adapters (base weights frozen); returns the trainable parameter count."""
        from peft import LoraConfig, get_peft_model

        if self.lora_config is not None:
            raise PluginError(f"PLM '{self.name}': LoRA is already applied")
        names = {n.rsplit(".", 1)[-1] for n, _ in self.model.named_modules()}
        missing = [t for t in target_modules if t not in names]
        if missing:
            raise PluginError(f"PLM '{self.name}': LoRA target modules {missing} not in the model "
                              f"(linear layers named e.g. {sorted(n for n in names if 'proj' in n)[:8]})")
        config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                            task_type="CAUSAL_LM", bias="none")
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # peft asks transformers 5.x a deprecated question (is_gradient_checkpointing); nothing for users to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            torch.manual_seed(seed)
            self.model = get_peft_model(self.model, config)
        self.lora_config = {"r": r, "alpha": alpha, "dropout": dropout, "target_modules": list(target_modules)}
        return sum(p.numel() for p in self.trainable_parameters())

    def enable_gradient_checkpointing(self) -> None:
        """Trade compute for activation memory (GPU runs of 7B models); inputs must require grad under peft."""
        base = self.base_model()
        # transformers 5.x renamed it (the old name warns); older releases only have the old one
        if hasattr(base, "activation_checkpointing_enable"):
            base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(self.model, "enable_input_require_grads"):
            self.model.enable_input_require_grads()

    # -- text ---------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded to the longest prompt of the batch, left-truncated to ``max_length`` tokens."""
        enc = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length,
                             return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    # -- forward ------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> YesNoOutput:
        base = self.base_model()
        decoder = base.get_decoder()
        # Positions count real tokens only, so a left-padded prompt gets the positions it has unpadded.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=False).last_hidden_state
        click = hidden[:, -1]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        prompt = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        head = base.get_output_embeddings()
        rows = torch.tensor([self.no_id, self.yes_id], device=hidden.device)
        logits = click @ head.weight[rows].t()
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[rows]
        return YesNoOutput(logits.float(), click, prompt)


# -- loading ----------------------------------------------------------------------------------------

def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_causal_lm(source: str | Path, *, name: str, local: bool, dtype: str = "float32",
                   answer_tokens: Sequence[str] = (" Yes", " No")) -> CausalLM:
    """``AutoModelForCausalLM`` + ``AutoTokenizer`` from a folder laid out like the hub's (``local=True``: never
    a network call) or from a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = resolve_source(source, name, local)
    with loading_errors(name, src, local):
        tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(src, local_files_only=local, dtype=getattr(torch, dtype))
    model.eval()
    return CausalLM(model, tokenizer, name=name, answer_tokens=answer_tokens,
                    loading_info={"source": src, "dtype": dtype})


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

_RANDOM_WORDS = ("Yes No user item movie title genres year age gender occupation zip liked recently will "
                 "the a is of and like Answer or ? . , : ( ) M F").split()


def random_word_tokenizer(extra_words: Sequence[str] = ()) -> Any:
    """A word-level fast tokenizer (whitespace + punctuation split; unknown words -> ``<unk>``), no files."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<s>", "</s>", *dict.fromkeys([*_RANDOM_WORDS, *map(str, range(100)), *extra_words])]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>")


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
