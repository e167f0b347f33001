"""FLIP's row texts: "<label> is <value>." for every categorical field, tokenized so that each value token knows its
field (the authors mark values with ``[val]`` tokens, tokenize, and drop the markers; we tokenize phrase by phrase,
which gives the same WordPiece tokens and, for byte-level BPE, the same words with their leading space).

`FieldTokens`: the token table (ids and lengths, ``ctrbench.text.TokenTable``) and ``field_of`` int8[N, max_length],
the field index of each value token (-1: [CLS]/[SEP], labels, "is", ".", padding). Built once per (data,
tokenizer, labels, length) in a cached stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrbench.atomic import atomic_file
from ctrbench.data.types import CTRData
from ctrbench.errors import DataError
from ctrbench.text import TokenTable, id_dtype, label, tokenizer_of

FORMAT = 1


def _ids(tok: Any, text: str) -> list[int]:
    return tok.convert_tokens_to_ids(tok.tokenize(text)) if text else []


class FieldTokens:
    """Row texts as tokens plus each token's field; ``gather(rows, device)`` → (ids, mask, field_of), int64
    [B, T] each, trimmed to the batch's longest text."""

    def __init__(self, table: TokenTable, field_of: np.ndarray) -> None:
        if field_of.shape != table.ids.shape:
            raise ValueError(f"field_of {field_of.shape} does not match the token ids {table.ids.shape}")
        self.table, self.field_of = table, torch.from_numpy(np.ascontiguousarray(field_of))

    @classmethod
    def build(cls, data: CTRData, tokenizer: Any, max_length: int) -> FieldTokens:
        tok = tokenizer_of(tokenizer)
        start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        end = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        fields = data.fields
        missing = [f.name for f in fields if f.name not in data.vocab]
        if missing:
            raise DataError(f"flip: dataset '{data.name}' has no vocab for {missing}, so its rows cannot be texts")
        heads = [_ids(tok, f"{' ' if j else ''}{label(data, f)} is") for j, f in enumerate(fields)]
        values = [[_ids(tok, f" {v}") for v in data.vocab[f.name]] for f in fields]
        dot = _ids(tok, ".")
        X = np.asarray(data.X)
        n = len(X)
        ids = np.full((n, max_length), tok.pad_token_id, dtype=id_dtype(max(len(tok), tok.pad_token_id + 1)))
        field_of = np.full((n, max_length), -1, dtype=np.int8)
        lengths = np.empty(n, dtype=np.uint8 if max_length <= 255 else np.uint16)
        body = max_length - (start is not None) - (end is not None)
        for r in range(n):
            row_ids: list[int] = []
            row_fields: list[int] = []
            for j in range(len(fields)):
                value = values[j][X[r, j]]
                row_ids += heads[j] + value + dot
                row_fields += [-1] * len(heads[j]) + [j] * len(value) + [-1] * len(dot)
            row_ids, row_fields = row_ids[:body], row_fields[:body]
            if start is not None:
                row_ids, row_fields = [start, *row_ids], [-1, *row_fields]
            if end is not None:
                row_ids, row_fields = [*row_ids, end], [*row_fields, -1]
            ids[r, :len(row_ids)] = row_ids
            field_of[r, :len(row_fields)] = row_fields
            lengths[r] = len(row_ids)
        return cls(TokenTable(ids, lengths, pad_token_id=tok.pad_token_id, padding_side="right"), field_of)

    def save(self, folder: Path) -> None:
        self.table.save(folder)
        with atomic_file(folder / "field_of.npy") as f:
            np.save(f, self.field_of.numpy(), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> FieldTokens:
        return cls(TokenTable.load(folder), np.load(folder / "field_of.npy"))

    def gather(self, rows: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask = self.table.gather(rows, device, trim=True)
        field_of = self.field_of[rows.cpu()][:, :ids.shape[1]].to(device).long()
        return ids, mask, field_of


def key(data: CTRData, tokenizer: Any, max_length: int) -> dict[str, Any]:
    """What a `FieldTokens` depends on: the data, the tokenizer, the field labels and the length."""
    from ctrbench.text import tokenizer_identity

    return {"format": FORMAT, "data": data.fingerprint, "tokenizer": tokenizer_identity(tokenizer),
            "labels": {f.name: label(data, f) for f in data.fields}, "max_length": int(max_length)}
