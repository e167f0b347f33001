"""What the PLM families that answer a prompt with "Yes" or "No" share (``CausalLM``, ``Seq2SeqLM``).

The TallRec / SLLM4CTR methods use such a model through one interface, whatever its architecture:

- ``family``: ``"causal_lm"`` or ``"seq2seq_lm"``;
- ``tokenize(texts, max_length) -> (input_ids, attention_mask)``, ``int64 [B, T]`` on the model's device;
- ``lm(input_ids, attention_mask) -> YesNoOutput`` (the two answer scores and two embeddings, below);
- ``lm.response_ids(labels) -> [B, R]`` (the answer token of each label, then EOS when the tokenizer has one) and
  ``lm.lm_loss(input_ids, attention_mask, response_ids, scope) -> (loss, YesNoOutput)``: the language-modelling
  cross-entropy over the whole vocabulary on the response tokens (``scope="response"``, TALLRec's objective) or,
  for a causal LM, on every token of prompt + response (``scope="full"``), with the ``YesNoOutput`` of the same
  forward pass;
- ``add_lora(r, alpha, dropout, target_modules, seed) -> trainable parameter count`` (peft; base weights frozen),
  ``trainable_parameters()``, ``enable_gradient_checkpointing()``;
- and what every ``nn.Module`` has (``.to``, ``.train``/``.eval``, ``.parameters``).

``YesNoLM`` holds the parts that do not depend on the architecture; a family adds its ``tokenize`` and
``forward`` and ``lm_loss``, its peft task type and its default LoRA targets. The answer scores of ``forward``
(what scoring uses) are always two rows of the output embedding applied to one hidden vector per prompt
(``answer_logits``), never the whole vocabulary; only ``lm_loss`` applies the full head, and only to the
positions its loss covers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ctrbench.errors import PluginError


@dataclass
class YesNoOutput:
    """Scores and embeddings of one batch of prompts."""

    logits: torch.Tensor  # [B, 2]: (l_no, l_yes)
    click: torch.Tensor  # [B, H]: last layer at the answer position — SLLM4CTR's e_L
    prompt: torch.Tensor  # [B, H]: last layer, mean over the prompt's real tokens — SLLM4CTR's e_c

    @property
    def margin(self) -> torch.Tensor:
        """l_yes - l_no: p_yes = sigmoid(margin), the two-way softmax over (No, Yes)."""
        return self.logits[:, 1] - self.logits[:, 0]


def single_token_id(tokenizer: Any, word: str, name: str) -> int:
    """The id of ``word`` if the tokenizer makes it one token (without special tokens); else a ``PluginError``."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1:
        raise PluginError(f"PLM '{name}': the answer {word!r} is {len(ids)} tokens ({ids}) for this tokenizer; "
                          "Yes/No scoring needs one token each (pass answer_tokens=... with single-token words)")
    return int(ids[0])


def answer_logits(hidden: torch.Tensor, head: nn.Module, token_ids: Sequence[int]) -> torch.Tensor:
    """``head(hidden)[:, token_ids]`` in float32 from ``len(token_ids)`` rows of the head: ``[B, H] -> [B, k]``.

    Computed with autocast off: under bf16 autocast the product would be rounded to bf16 (8 significant bits,
    steps of 0.06 at a logit of 10), so the Yes/No margins of different prompts collapse onto a handful of values
    and AUC is computed over ties (a bf16 TallRec run scored 300 test rows with 10 distinct probabilities). Two
    rows of the head cost nothing in float32."""
    rows = torch.tensor(list(token_ids), device=hidden.device)
    with torch.autocast(hidden.device.type, enabled=False):
        logits = hidden.float() @ head.weight[rows].float().t()
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[rows].float()
    return logits


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden [B, T, H]`` over the positions where ``attention_mask [B, T]`` is 1: ``[B, H]``."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class YesNoLM(nn.Module):
    """Base of the Yes/No-answering families: answer-token ids, LoRA, gradient checkpointing, parameters.

    Subclasses set ``family``, ``lora_task_type`` (peft's ``TaskType`` name) and ``default_lora_targets``, and
    implement ``tokenize`` and ``forward``.
    """

    family: ClassVar[str] = ""
    lora_task_type: ClassVar[str] = ""
    default_lora_targets: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str, answer_tokens: Sequence[str],
                 loading_info: dict[str, Any] | None) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.loading_info = loading_info or {}
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
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
        """The transformers model (under peft's wrapper when LoRA is on)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- LoRA ---------------------------------------------------------------------------------------
    def add_lora(self, r: int = 8, alpha: int = 16, dropout: float = 0.05,
                 target_modules: Sequence[str] | None = None, seed: int = 0) -> int:
        """Wrap the model with peft LoRA adapters (base weights frozen); returns the trainable parameter count.

        ``target_modules`` are module names (the last part of the dotted path); ``None`` takes the family's
        ``default_lora_targets``. The adapters are initialised under ``seed`` without touching the global RNG.
        """
        from peft import LoraConfig, get_peft_model

        if self.lora_config is not None:
            raise PluginError(f"PLM '{self.name}': LoRA is already applied")
        targets = list(self.default_lora_targets if target_modules is None else target_modules)
        names = {n.rsplit(".", 1)[-1] for n, _ in self.model.named_modules()}
        missing = [t for t in targets if t not in names]
        if missing:
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in self.model.named_modules() if isinstance(m, nn.Linear)})
            raise PluginError(f"PLM '{self.name}': LoRA target modules {missing} not in the model "
                              f"(its linear layers are named {linear[:10]}; a {self.family} defaults to "
                              f"{list(self.default_lora_targets)})")
        config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                            task_type=self.lora_task_type, bias="none")
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # peft asks transformers 5.x a deprecated question (is_gradient_checkpointing); nothing for users to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            torch.manual_seed(seed)
            self.model = get_peft_model(self.model, config)
        self.lora_config = {"r": r, "alpha": alpha, "dropout": dropout, "target_modules": targets}
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

    # -- the response of a language-modelling loss ----------------------------------------------------
    def response_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """``[B, R]`` int64 on the model's device: the answer token of each label (1 -> yes, else no), followed by
        the tokenizer's EOS when it has one (R = 2; else R = 1) — the response TALLRec trains on."""
        answer = torch.where(labels.to(self.device) > 0.5, self.yes_id, self.no_id).long().unsqueeze(1)
        eos = self.tokenizer.eos_token_id
        if eos is None:
            return answer
        return torch.cat([answer, torch.full_like(answer, int(eos))], dim=1)

    # -- the family's part --------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> YesNoOutput:
        raise NotImplementedError

    def lm_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_ids: torch.Tensor,
                scope: str = "response") -> tuple[torch.Tensor, YesNoOutput]:
        raise NotImplementedError


# -- a word-level tokenizer for the random tiny models of tests and CI -----------------------------------

_RANDOM_WORDS = ("Yes No user item movie title genres year age gender occupation zip liked recently will "
                 "the a is of and like Answer or ? . , : ( ) M F").split()


def random_word_tokenizer(extra_words: Sequence[str] = (), append_eos: bool = False) -> Any:
    """A word-level fast tokenizer (whitespace + punctuation split; unknown words -> ``<unk>``), no files.

    Ids: ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3, then the words. ``append_eos`` ends every text with
    ``</s>`` (as T5's tokenizer does with ``add_special_tokens=True``).
    """
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<s>", "</s>", *dict.fromkeys([*_RANDOM_WORDS, *map(str, range(100)), *extra_words])]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    if append_eos:
        tok.post_processor = TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                special_tokens=[("</s>", words.index("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>")
