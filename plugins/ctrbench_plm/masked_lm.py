"""The ``MaskedLM`` family: a transformers masked-LM encoder with soft prompts, and no forked model code.

Two ways to inject prompts (ClickPrompt, Lin et al. 2024, §3.3 and its "w/o layerwise" ablation):

``prompt_mode="layerwise"`` (default, ClickPrompt's strategy; prefix tuning)
    ``prompts: [B, num_layers, 2, K, hidden_size]`` — for every layer l, K key vectors (``[:, l, 0]``) and K value
    vectors (``[:, l, 1]``), the layout ClickPrompt's public code generates (K × layers × 2 × hidden) and peft's
    prefix tuning uses. Each is reshaped to ``[B, num_heads, K, head_dim]`` (head h takes features
    ``h*head_dim:(h+1)*head_dim``, as the model's own key/value projections are split), put into a
    ``transformers.DynamicCache`` as that layer's past keys/values, and the attention mask is extended by K
    ones on the left. Every text token of layer l then also attends to the K prefix positions of layer l; the
    prefix has no query, so it produces no output positions, and the outputs keep the text length.

``prompt_mode="first_layer"`` (the shallow ablation; prompt tuning)
    ``prompts: [B, K, hidden_size]`` in word-embedding space, prepended to the word embeddings of the text
    (``inputs_embeds``); the model adds position/type embeddings and LayerNorm to them like to any token. The
    mask is extended by K on the left and the K prompt positions are sliced off the outputs, so hidden states
    and logits keep the text length.

Position ids are passed explicitly in both modes, computed from the text alone: text token i gets the same
position it gets without prompts (transformers 5 would otherwise start the text at the cache length K and shift
every pretrained position embedding). In first-layer mode all K prompt tokens take the position of the first
text token ([CLS]/<s>). So a prompt that is masked out (``prompt_mask`` zeros) gives exactly the no-prompt
output, in both modes.

``pooled(hidden)`` is the first token's ([CLS]/<s>) final hidden state, as ClickPrompt's PLM-side CTR head uses;
masked-LM checkpoints carry no pretrained pooler (dense + tanh), so none is applied. ``pooling="mean"`` gives the
masked mean instead.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctrbench_plm.loading import loading_errors, resolve_source

log = logging.getLogger(__name__)

PROMPT_MODES = ("layerwise", "first_layer")
POOLINGS = ("cls", "mean")


class MaskedLM(nn.Module):
    """A masked LM (``AutoModelForMaskedLM``) + its tokenizer, with layer-wise or first-layer soft prompts.

    Attributes: ``num_layers``, ``num_heads``, ``hidden_size``, ``head_dim``, ``vocab_size``, ``name``,
    ``loading_info`` (transformers' missing/unexpected keys; ``new_weights`` lists weights that were
    initialised at random because the checkpoint lacks them).
    """

    family = "masked_lm"

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str = "", pooling: str = "cls",
                 loading_info: dict[str, Any] | None = None) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        cfg = model.config
        if getattr(cfg, "is_decoder", False) or getattr(cfg, "is_encoder_decoder", False):
            raise ValueError(f"MaskedLM needs a bidirectional encoder; {type(model).__name__} is configured as a "
                             "decoder")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(cfg, "name_or_path", "") or type(model).__name__
        self.pooling = pooling
        self.num_layers = int(cfg.num_hidden_layers)
        self.num_heads = int(cfg.num_attention_heads)
        self.hidden_size = int(cfg.hidden_size)
        self.head_dim = int(getattr(cfg, "head_dim", None) or self.hidden_size // self.num_heads)
        if self.head_dim * self.num_heads != self.hidden_size:
            raise ValueError(f"{self.name}: hidden_size {self.hidden_size} is not num_heads × head_dim; "
                             "layer-wise prompts of width hidden_size cannot be split into heads")
        self.vocab_size = int(cfg.vocab_size)
        self.loading_info = dict(loading_info or {})
        params = inspect.signature(model.base_model.forward).parameters
        # transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns, and goes in 5.40).
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    # ---------------------------------------------------------------------------------------------- basics
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def mask_token_id(self) -> int:
        return int(self.tokenizer.mask_token_id)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def max_text_length(self) -> int:
        """The most text tokens a forward accepts (position table size, less RoBERTa's padding offset)."""
        n = int(self.model.config.max_position_embeddings)
        emb = self.model.base_model.embeddings
        if hasattr(emb, "create_position_ids_from_input_ids"):
            n -= int(emb.padding_idx) + 1
        return n

    def prompt_shape(self, num_prompts: int, prompt_mode: str = "layerwise") -> tuple[int, ...]:
        """The per-sample prompt shape (without the batch dimension) for ``num_prompts`` (K) prompts."""
        _check_mode(prompt_mode)
        if prompt_mode == "layerwise":
            return (self.num_layers, 2, num_prompts, self.hidden_size)
        return (num_prompts, self.hidden_size)

    def tokenize(self, texts: Sequence[str], max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize with special tokens, truncate to ``max_length``, pad to the longest: ``(input_ids, mask)``,
        both ``int64 [B, T]`` on the model's device."""
        if isinstance(texts, str):
            texts = [texts]
        if max_length > self.max_text_length:
            raise ValueError(f"{self.name}: max_length {max_length} exceeds the model's {self.max_text_length} "
                             "positions")
        b = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length,
                           return_tensors="pt")
        return b["input_ids"].to(self.device), b["attention_mask"].to(self.device)

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The position ids the model gives the text when it has no prompts (BERT: 0..T-1; RoBERTa: padding-aware,
        offset by ``padding_idx + 1``)."""
        emb = self.model.base_model.embeddings
        if hasattr(emb, "create_position_ids_from_input_ids"):
            return emb.create_position_ids_from_input_ids(input_ids, emb.padding_idx)
        b, t = input_ids.shape
        return torch.arange(t, device=input_ids.device).unsqueeze(0).expand(b, t)

    # ---------------------------------------------------------------------------------------------- forward
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompts: torch.Tensor | None = None,
               prompt_mode: str = "layerwise", prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states of the text positions, ``[B, T, hidden_size]``.

        ``prompts``: ``[B, num_layers, 2, K, hidden_size]`` (layerwise) or ``[B, K, hidden_size]`` (first_layer);
        ``prompt_mask``: optional ``[B, K]`` (1 = attend to that prompt; default all ones).
        """
        out = self._forward(self.model.base_model, input_ids, attention_mask, prompts, prompt_mode, prompt_mask)
        return out.last_hidden_state[:, -input_ids.shape[1]:]

    forward = encode

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      prompts: torch.Tensor | None = None, prompt_mode: str = "layerwise",
                      prompt_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """``num_layers + 1`` tensors ``[B, T, hidden_size]``: the embedding output, then each layer's output
        (text positions only). Layer-wise prompts of layer l enter the attention of layer l, so they change
        ``hidden_states[l + 1]`` and later, never ``hidden_states[: l + 1]``."""
        out = self._forward(self.model.base_model, input_ids, attention_mask, prompts, prompt_mode, prompt_mask,
                            output_hidden_states=True)
        t = input_ids.shape[1]
        return tuple(h[:, -t:] for h in out.hidden_states)

    def mlm_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompts: torch.Tensor | None = None,
                   prompt_mode: str = "layerwise", prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Vocabulary logits ``[B, T, vocab_size]`` from the model's own MLM head (the whole pretrained
        ``*ForMaskedLM`` forward). For large vocabularies, ``mlm_head(encode(...)[masked])`` scores only the
        masked positions."""
        out = self._forward(self.model, input_ids, attention_mask, prompts, prompt_mode, prompt_mask)
        return out.logits[:, -input_ids.shape[1]:]

    def mlm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's MLM head applied to hidden states ``[..., hidden_size] -> [..., vocab_size]``."""
        head = _mlm_head_module(self.model)
        if head is None:
            raise NotImplementedError(f"{type(self.model).__name__}: MLM head module not found; use mlm_logits")
        return head(hidden)

    def pooled(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, H] -> [B, H]``: the first ([CLS]/<s>) token's hidden state (``pooling="cls"``, ClickPrompt's
        choice), or the masked mean over text tokens (``pooling="mean"``, needs ``attention_mask``)."""
        if self.pooling == "cls":
            return hidden[:, 0]
        if attention_mask is None:
            raise ValueError("pooling='mean' needs the attention mask")
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)

    def _forward(self, module: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 prompts: torch.Tensor | None, prompt_mode: str, prompt_mask: torch.Tensor | None,
                 **kwargs: Any) -> Any:
        _check_mode(prompt_mode)
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(f"input_ids and attention_mask must both be [B, T]; got {tuple(input_ids.shape)} and "
                             f"{tuple(attention_mask.shape)}")
        b, t = input_ids.shape
        positions = self.position_ids(input_ids)
        if prompts is not None:
            prompts = prompts.to(device=input_ids.device, dtype=self.dtype)
            k = self._check_prompts(prompts, prompt_mode, b)
            if k == 0:
                prompts = None
        if prompts is None:
            return module(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, **kwargs)
        if prompt_mask is None:
            prompt_mask = attention_mask.new_ones(b, k)
        elif tuple(prompt_mask.shape) != (b, k):
            raise ValueError(f"prompt_mask must be [B, K] = {(b, k)}, got {tuple(prompt_mask.shape)}")
        mask = torch.cat([prompt_mask.to(attention_mask.dtype), attention_mask], dim=1)
        if prompt_mode == "layerwise":
            from transformers import DynamicCache

            cache = DynamicCache()
            # [B, L, 2, K, H] -> [L, 2, B, heads, K, head_dim]
            kv = prompts.view(b, self.num_layers, 2, k, self.num_heads, self.head_dim).permute(1, 2, 0, 4, 3, 5)
            for layer in range(self.num_layers):
                cache.update(kv[layer, 0], kv[layer, 1], layer)
            return module(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                          **{self._cache_kwarg: cache}, **kwargs)
        words = self.model.get_input_embeddings()(input_ids)
        embeds = torch.cat([prompts, words], dim=1)
        positions = torch.cat([positions[:, :1].expand(b, k), positions], dim=1)
        return module(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, **kwargs)

    def _check_prompts(self, prompts: torch.Tensor, prompt_mode: str, batch: int) -> int:
        if prompt_mode == "layerwise":
            ok = (prompts.dim() == 5 and prompts.shape[0] == batch and prompts.shape[1] == self.num_layers
                  and prompts.shape[2] == 2 and prompts.shape[4] == self.hidden_size)
            want = f"[B={batch}, num_layers={self.num_layers}, 2, K, hidden_size={self.hidden_size}]"
            k_dim = 3
        else:
            ok = prompts.dim() == 3 and prompts.shape[0] == batch and prompts.shape[2] == self.hidden_size
            want = f"[B={batch}, K, hidden_size={self.hidden_size}]"
            k_dim = 1
        if not ok:
            raise ValueError(f"{self.name}: {prompt_mode} prompts must be {want}, got {tuple(prompts.shape)}")
        return int(prompts.shape[k_dim])


def _check_mode(prompt_mode: str) -> None:
    if prompt_mode not in PROMPT_MODES:
        raise ValueError(f"prompt_mode must be one of {PROMPT_MODES}, got {prompt_mode!r}")


def _mlm_head_module(model: nn.Module) -> nn.Module | None:
    for attr in ("cls", "lm_head", "predictions"):  # BERT, RoBERTa, ALBERT
        head = getattr(model, attr, None)
        if isinstance(head, nn.Module):
            return head
    return None


@contextlib.contextmanager
def _seeded(seed: int | None):
    """Fixes the init of any weight the checkpoint lacks (or of a random model) without touching global RNG."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def load_masked_lm(source: str | Path, *, name: str, local: bool, pooling: str = "cls",
                   seed: int | None = 0) -> MaskedLM:
    """``AutoModelForMaskedLM`` + ``AutoTokenizer`` from a local folder laid out like the hub's (``local=True``:
    ``local_files_only``, never a network call) or from a hub id. Weights the checkpoint lacks are initialised
    under ``seed`` and listed in ``loading_info["new_weights"]`` (and logged)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    src = resolve_source(source, name, local)
    with loading_errors(name, src, local):
        tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=local)
        with _seeded(seed):
            model, info = AutoModelForMaskedLM.from_pretrained(src, local_files_only=local, output_loading_info=True)
    info = {k: sorted(v) if isinstance(v, (set, list, tuple)) else v for k, v in dict(info).items()}
    new = list(info.get("missing_keys", []))
    info["new_weights"] = new
    if new:
        log.info("PLM '%s': %d weights are not in the checkpoint and were initialised at random: %s",
                 name, len(new), ", ".join(new))
    model.eval()
    return MaskedLM(model, tokenizer, name=name, pooling=pooling, loading_info=info)


# A WordPiece vocabulary for the random test model: specials, characters and their continuations, a few words.
_RANDOM_WORDS = ("the is a of and user item movie genre title year rating like liked watched comedy drama "
                 "action yes no what was her his film book").split()


def random_vocab() -> list[str]:
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    return (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + list(".,!?'-:;()|&/")
            + ["##" + c for c in chars] + _RANDOM_WORDS)


def random_bert(*, seed: int = 0, hidden_size: int = 32, num_layers: int = 2, num_heads: int = 2,
                intermediate_size: int = 64, max_positions: int = 128, pooling: str = "cls") -> MaskedLM:
    """A randomly initialised tiny ``BertForMaskedLM`` with a small uncased WordPiece tokenizer (no files, no
    network): for tests and CI. Deterministic in ``seed``."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    vocab = random_vocab()
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, model_max_length=max_positions)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=intermediate_size,
                        max_position_embeddings=max_positions, pad_token_id=0, tie_word_embeddings=True)
    with _seeded(seed):
        model = BertForMaskedLM(config)
    model.eval()
    return MaskedLM(model, tokenizer, name="random-bert", pooling=pooling,
                    loading_info={"missing_keys": [], "new_weights": ["(all: randomly initialised)"]})
