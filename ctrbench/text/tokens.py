"""Texts tokenized once, stored compactly, gathered per batch onto the device.

A `TokenTable` holds ``ids [N, L]`` in the smallest unsigned dtype that fits the vocabulary (``uint8`` up to 256
ids, ``uint16`` up to 65,536 (BERT, RoBERTa, ...), else ``uint32``) and one length per text (``uint8``/``uint16``),
instead of ``int64`` ids and masks: a quarter of the memory for BERT-sized vocabularies, and the table stays on
the CPU. ``gather(rows, device)`` moves only the batch and widens it there to the ``int64 [B, L]`` ids and
attention mask the tokenizer itself returns with ``padding="max_length", truncation=True`` (left or right
padding, as the tokenizer pads).

`token_cache_key` is what identifies a table (pass it to ``RunContext.stage`` or compare it on `TokenTable.load`):
the data fingerprint, the tokenizer's identity, which texts with which fields, template and labels, the maximum
length and the code's format version; a change to any of them never reuses stale tokens.

torch >= 2.2 has no ``uint16``/``uint32`` tensors, so the table is held as a same-width signed view (``int16``,
``int32``) and widened with a bit mask (``x.long() & 0xFFFF``), which is exact.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrbench.atomic import atomic_file, atomic_write_json, make_dirs
from ctrbench.data.types import CTRData
from ctrbench.errors import DataError
from ctrbench.hashing import canonical_json
from ctrbench.text.templates import generic_prompt, label, row_texts

#: Bump when rendering texts, tokenizing or storing changes: it is part of every key.
TOKENS_FORMAT = 1
META = "tokens.json"
_SIGNED = {np.dtype(np.uint8): np.uint8, np.dtype(np.uint16): np.int16, np.dtype(np.uint32): np.int32}
_MASKS = {np.dtype(np.uint8): None, np.dtype(np.uint16): 0xFFFF, np.dtype(np.uint32): 0xFFFFFFFF}


def tokenizer_of(obj: Any) -> Any:
    """The HF tokenizer of ``obj``: ``obj.tokenizer`` for the PLM wrappers (`MaskedLM`, `CausalLM`), else ``obj``."""
    return getattr(obj, "tokenizer", obj)


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding ids ``0 .. vocab_size - 1``."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    raise ValueError(f"vocabulary of {vocab_size} ids does not fit 32 bits")


def _length_dtype(max_length: int) -> np.dtype:
    return np.dtype(np.uint8) if max_length <= 255 else np.dtype(np.uint16) if max_length <= 65535 else np.dtype(
        np.uint32)


def _sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What makes a tokenizer's output what it is: its name, class, size, a hash of its vocabulary and one of its
    configuration (a fast tokenizer's whole pipeline, normaliser included; a slow one's scalar settings, e.g.
    ``do_lower_case``), and the padding/truncation sides.

    ``name`` is ``name_or_path``, reduced to its last component when it is an absolute path: a model folder in a
    per-host cache must not make the same tokenizer a different key on each host (the hashes identify it).
    """
    tok = tokenizer_of(tokenizer)
    name = str(getattr(tok, "name_or_path", "") or "")
    if os.path.isabs(name):
        name = Path(name).name
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        config = json.loads(backend.to_str())
        config.get("model", {}).pop("vocab", None)  # hashed on its own below
    else:
        config = {k: v for k, v in sorted(getattr(tok, "init_kwargs", {}).items())
                  if isinstance(v, (bool, int, float)) or (isinstance(v, str) and not os.path.isabs(v)
                                                           and not k.endswith("_file") and k != "name_or_path")}
    return {"name": name, "class": type(tok).__name__, "vocab_size": len(tok),
            "vocab_sha256": _sha256(sorted(tok.get_vocab().items())), "config_sha256": _sha256(config),
            "padding_side": getattr(tok, "padding_side", "right"),
            "truncation_side": getattr(tok, "truncation_side", "right")}


TEXT_KINDS = ("row", "item", "user", "prompt")


def token_cache_key(data: CTRData, tokenizer: Any, *, texts: str, max_length: int,
                    fields: Sequence[str] | None = None, template: str | None = None,
                    **options: Any) -> dict[str, Any]:
    """The JSON-able dict identifying a token table: ``data.fingerprint``, `tokenizer_identity`, ``texts``
    (``"row"``, ``"item"``, ``"user"``, ``"prompt"`` or a method's own kind), ``fields``, the template in effect
    (``template``, else the dataset's ``text.<kind>``), the field labels, ``max_length``, any ``options`` that
    change the texts (``history_items=5``) and `TOKENS_FORMAT`. An unfingerprinted dataset has no key."""
    if not data.fingerprint:
        raise DataError(f"dataset '{data.name}' has no fingerprint, so its tokens cannot be cached under a key")
    if template is None and texts in TEXT_KINDS and fields is None:
        template = getattr(data.text, texts) or None
        if texts == "prompt" and template is None:
            template = generic_prompt(data)
    labels = {f.name: label(data, f) for f in [*data.fields, *data.sequence_fields]}
    return {"format": TOKENS_FORMAT, "data": data.fingerprint, "tokenizer": tokenizer_identity(tokenizer),
            "texts": texts, "fields": list(fields) if fields is not None else None, "template": template,
            "labels": labels, "max_length": int(max_length), **options}


def _save_npy(path: Path, arr: np.ndarray) -> None:
    """``np.save`` to a temp file beside ``path``, fsynced, then renamed over it (errors name ``path``)."""
    with atomic_file(path) as f:
        np.save(f, arr, allow_pickle=False)


class TokenTable:
    """Token ids of N texts, ``[N, max_length]`` in a compact dtype, plus each text's length (its real tokens).

    Build with `from_texts` / `from_renderer` / `for_rows`, store with `save`, reopen with `load`, and get a batch
    with `gather`. The table lives on the CPU (``pin_memory()`` stages batches in pinned memory for asynchronous
    copies) or, when it fits, on the device (``to(device)``).
    """

    def __init__(self, ids: np.ndarray, lengths: np.ndarray, *, pad_token_id: int, padding_side: str = "right",
                 key: dict[str, Any] | None = None) -> None:
        if ids.ndim != 2 or lengths.shape != (ids.shape[0],):
            raise ValueError(f"ids must be [N, L] and lengths [N]; got {ids.shape} and {lengths.shape}")
        if ids.dtype not in _SIGNED:
            raise ValueError(f"ids must be uint8/uint16/uint32, got {ids.dtype}")
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.ids = ids
        self.lengths = lengths
        self.pad_token_id = int(pad_token_id)
        self.padding_side = padding_side
        self.key = key
        self._ids = torch.from_numpy(np.ascontiguousarray(ids).view(_SIGNED[ids.dtype]))
        self._lengths = torch.from_numpy(np.ascontiguousarray(lengths).astype(np.int32, copy=False))
        self._bitmask = _MASKS[ids.dtype]
        self._pin = False

    # -- shape ----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def max_length(self) -> int:
        return int(self.ids.shape[1])

    @property
    def device(self) -> torch.device:
        return self._ids.device

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.lengths.nbytes)

    # -- building -------------------------------------------------------------------------------------------
    @classmethod
    def from_renderer(cls, n: int, render: Callable[[np.ndarray], Sequence[str]], tokenizer: Any, max_length: int,
                      *, chunk: int = 4096, key: dict[str, Any] | None = None) -> TokenTable:
        """Tokenize ``render(indices)`` for ``0 .. n - 1`` in chunks (the texts of a large dataset are never all in
        memory). ``tokenizer``: an HF tokenizer or a PLM wrapper with ``.tokenizer`` (whose ``max_text_length``,
        if it has one, bounds ``max_length``)."""
        tok = tokenizer_of(tokenizer)
        limit = getattr(tokenizer, "max_text_length", None)
        if isinstance(limit, int) and max_length > limit:
            raise ValueError(f"max_length {max_length} exceeds the model's {limit} positions")
        if tok.pad_token_id is None:
            raise ValueError(f"tokenizer {type(tok).__name__} has no pad token; set tokenizer.pad_token first")
        side = getattr(tok, "padding_side", "right")
        ids = np.empty((n, max_length), dtype=id_dtype(max(len(tok), tok.pad_token_id + 1)))
        lengths = np.empty(n, dtype=_length_dtype(max_length))
        positions = np.arange(max_length)
        for start in range(0, n, chunk):
            idx = np.arange(start, min(start + chunk, n))
            texts = list(render(idx))
            if len(texts) != len(idx):
                raise ValueError(f"render returned {len(texts)} texts for {len(idx)} indices")
            enc = tok(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
            t_ids, t_mask = np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"])
            if t_ids.shape != (len(idx), max_length):
                raise ValueError(f"tokenizer returned ids of shape {t_ids.shape}, expected {(len(idx), max_length)}")
            lens = t_mask.sum(axis=1)
            expect = positions < lens[:, None] if side == "right" else positions >= max_length - lens[:, None]
            if not np.array_equal(t_mask.astype(bool), expect):
                raise ValueError(f"tokenizer {type(tok).__name__}: attention mask is not one contiguous run on the "
                                 f"{side} padding side; a TokenTable cannot store it as lengths")
            if t_ids.size and (t_ids.min() < 0 or t_ids.max() > np.iinfo(ids.dtype).max):
                raise ValueError(f"token id {int(t_ids.max())} outside the vocabulary of {len(tok)}")
            ids[idx] = t_ids
            lengths[idx] = lens
        return cls(ids, lengths, pad_token_id=tok.pad_token_id, padding_side=side, key=key)

    @classmethod
    def from_texts(cls, texts: Sequence[str], tokenizer: Any, max_length: int, *, chunk: int = 4096,
                   key: dict[str, Any] | None = None) -> TokenTable:
        """Tokenize a list of texts (item or user texts: one per index)."""
        texts = list(texts)
        return cls.from_renderer(len(texts), lambda idx: [texts[i] for i in idx], tokenizer, max_length,
                                 chunk=chunk, key=key)

    @classmethod
    def for_rows(cls, data: CTRData, tokenizer: Any, max_length: int, *, fields: Sequence[str] | None = None,
                 template: str | None = None, history_items: int = 5, chunk: int = 4096,
                 key: dict[str, Any] | None = None) -> TokenTable:
        """Every row's text (`row_texts`), rendered and tokenized chunk by chunk; row i of the table is row i of
        ``data``."""
        def render(idx: np.ndarray) -> list[str]:
            return row_texts(data, idx, fields=fields, template=template, history_items=history_items)

        return cls.from_renderer(data.num_samples, render, tokenizer, max_length, chunk=chunk, key=key)

    # -- placement --------------------------------------------------------------------------------------------
    def to(self, device: torch.device | str) -> TokenTable:
        """Hold the (compact) table on ``device``: gathers index there and copy nothing. Returns ``self``."""
        self._ids = self._ids.to(device)
        self._lengths = self._lengths.to(device)
        return self

    def pin_memory(self) -> TokenTable:
        """Gather CPU batches into pinned memory, so their copy to a CUDA device is asynchronous. A no-op without
        CUDA. Returns ``self``."""
        self._pin = torch.cuda.is_available()
        return self

    # -- batches ----------------------------------------------------------------------------------------------
    def _select(self, src: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self._pin and src.device.type == "cpu":
            out = torch.empty((len(idx), *src.shape[1:]), dtype=src.dtype, pin_memory=True)
            return torch.index_select(src, 0, idx, out=out)
        return src.index_select(0, idx)

    def gather(self, rows: torch.Tensor | np.ndarray | Sequence[int], device: torch.device | str | None = None, *,
               trim: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)``, both ``int64 [B, max_length]`` on ``device`` (default: the table's),
        equal to what the tokenizer returns for those texts with ``padding="max_length", truncation=True``.

        Only the batch is copied; it is widened to int64 on ``device``. ``trim``: cut the padding columns no text
        of the batch uses (right padding: the tail; left: the head), as encoders need not see them; this reads
        the batch's longest length back to the host.
        """
        device = torch.device(device) if device is not None else self.device
        idx = torch.as_tensor(rows, dtype=torch.long).to(self._ids.device)
        if idx.dim() != 1:
            raise ValueError(f"rows must be 1-D, got shape {tuple(idx.shape)}")
        non_blocking = self._pin and device.type == "cuda"
        ids = self._select(self._ids, idx).to(device, non_blocking=non_blocking).long()
        if self._bitmask is not None:
            ids &= self._bitmask
        lengths = self._select(self._lengths, idx).to(device, non_blocking=non_blocking).long()
        width = self.max_length
        positions = torch.arange(width, device=device)
        if self.padding_side == "right":
            mask = positions < lengths[:, None]
        else:
            mask = positions >= width - lengths[:, None]
        mask = mask.long()
        if trim and len(idx):
            used = int(lengths.max())
            cols = slice(0, used) if self.padding_side == "right" else slice(width - used, width)
            ids, mask = ids[:, cols], mask[:, cols]
        return ids, mask

    # -- storage ------------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``ids.npy``, ``lengths.npy`` and, last, ``tokens.json`` (shape, dtypes, padding, key) into
        ``directory``, each file atomically (a reader never sees a half-written one; without ``tokens.json`` the
        folder is incomplete). Fits inside a ``RunContext.stage`` folder. Returns the folder."""
        directory = Path(directory)
        make_dirs(directory)
        _save_npy(directory / "ids.npy", self.ids)
        _save_npy(directory / "lengths.npy", self.lengths)
        atomic_write_json(directory / META, {
            "format": TOKENS_FORMAT, "n": len(self), "max_length": self.max_length, "ids_dtype": str(self.ids.dtype),
            "lengths_dtype": str(self.lengths.dtype), "pad_token_id": self.pad_token_id,
            "padding_side": self.padding_side, "key": self.key})
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, key: dict[str, Any] | None = None, mmap: bool = False) -> TokenTable:
        """The table saved in ``directory``; with ``key``, a DataError unless it was saved under that key.
        ``mmap``: map ``ids.npy`` (copy-on-write) instead of reading it, so gathers page in only the rows they
        touch (tables larger than memory)."""
        directory = Path(directory)
        meta_path = directory / META
        if not meta_path.is_file():
            raise DataError(f"{meta_path} is missing: no token table there (or an incomplete one)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{meta_path} is not readable JSON ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != TOKENS_FORMAT:
            raise DataError(f"{meta_path}: token table format {meta.get('format') if isinstance(meta, dict) else '?'}, "
                            f"this ctrbench reads {TOKENS_FORMAT}; rebuild it")
        if key is not None and canonical_json(meta.get("key")) != canonical_json(key):
            raise DataError(f"{directory}: token table was built for another key (data, tokenizer, texts or length "
                            "differ); rebuild it")
        try:
            ids = np.load(directory / "ids.npy", mmap_mode="c" if mmap else None, allow_pickle=False)
            lengths = np.load(directory / "lengths.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{directory}: token arrays unreadable ({exc})") from None
        n, width = meta["n"], meta["max_length"]
        if (ids.shape != (n, width) or str(ids.dtype) != meta["ids_dtype"] or lengths.shape != (n,)
                or str(lengths.dtype) != meta["lengths_dtype"]):
            raise DataError(f"{directory}: ids {ids.shape} {ids.dtype} / lengths {lengths.shape} {lengths.dtype} do "
                            f"not match {META} (n={n}, max_length={width}); rebuild it")
        return cls(ids, lengths, pad_token_id=meta["pad_token_id"], padding_side=meta["padding_side"],
                   key=meta.get("key"))

