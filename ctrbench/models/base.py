"""The CTR backbone interface: ``embed`` → ``interact`` → ``head``.

This decomposition is what the PLM fusion methods rely on: ClickPrompt's prompt generator reads the
final hidden state ``q = interact(E)``; CELA appends item-text embeddings as ``extra`` fields to ``E`` and
aligns against the item embedding table, reached through ``FieldEmbedding.table(name)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from ctrbench.data.types import Field


@dataclass(frozen=True)
class BackboneInfo:
    """Registry metadata a backbone class carries (see `backbone`)."""

    name: str
    summary: str
    paper: str
    q: str


B = TypeVar("B")


def backbone(name: str, *, summary: str, paper: str, q: str) -> Callable[[B], B]:
    """Class decorator: mark a `CTRBackbone` for registration under ``name``.

    The built-in CTR plugin registers every decorated class it finds in its package, so adding a model is
    adding one file (timm's pattern): no central list to edit. ``q`` says what ``interact`` returns for this
    model, because ClickPrompt's prompt generator reads it.
    """

    def mark(cls: B) -> B:
        cls.__ctrbench_backbone__ = BackboneInfo(name, summary, paper, q)  # type: ignore[attr-defined]
        return cls

    return mark


def backbone_info(obj: Any) -> BackboneInfo | None:
    return obj.__dict__.get("__ctrbench_backbone__") if isinstance(obj, type) else None


@dataclass
class Batch:
    """A mini-batch, already on the model's device.

    ``x``: int64[B, F] categorical indices; ``y``: float32[B] labels; ``idx``: int64[B] row indices into
    the dataset (methods that keep per-sample tensors, e.g. tokenized text, gather with it);
    ``sequences``: name → int64[B, L] (0 = padding).
    """

    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor
    sequences: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])


class FieldEmbedding(nn.Module):
    """Per-field embedding tables stored as one matrix with row offsets.

    One gather for all fields is several times faster on CPU than F separate lookups; ``table(name)``
    still exposes each field's own rows (a view of the shared weight, so gradients flow to it). With ``sparse``
    (set by the trainer for ``train.sparse_embeddings``, `ctrbench.engine.sparse`) ``forward`` and ``lookup``
    give the table a sparse gradient holding only the looked-up rows.
    """

    def __init__(self, fields: Sequence[Field], dim: int, init_std: float = 1e-4) -> None:
        super().__init__()
        self.field_names = [f.name for f in fields]
        self.vocab_sizes = [int(f.vocab_size) for f in fields]
        self.dim = dim
        offsets = torch.tensor([0, *torch.tensor(self.vocab_sizes).cumsum(0)[:-1].tolist()], dtype=torch.long)
        self.register_buffer("offsets", offsets, persistent=False)
        self.weight = nn.Parameter(torch.empty(sum(self.vocab_sizes), dim))
        nn.init.normal_(self.weight, std=init_std)
        self.sparse = False

    @property
    def num_fields(self) -> int:
        return len(self.field_names)

    @torch.no_grad()
    def reinit(self, scheme: str) -> None:
        """Re-draw every field's table: ``xavier_normal`` per field (std = sqrt(2 / (vocab + dim)), ~1e-2 on
        MovieLens; the ClickPrompt authors' and FuxiCTR's init) instead of N(0, init_std). Per field because the
        tables are one matrix here but separate ``nn.Embedding`` modules in the code this init comes from."""
        if scheme != "xavier_normal":
            raise ValueError(f"unknown embedding init {scheme!r}; one of: default, xavier_normal")
        for j, vocab in enumerate(self.vocab_sizes):
            start = int(self.offsets[j])
            std = (2.0 / (vocab + self.dim)) ** 0.5
            self.weight[start:start + vocab].normal_(0.0, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """int64[B, F] → float[B, F, dim].

        On the CPU the gather is ``index_select``: the same rows, but its backward is one ``index_add_`` where
        ``embedding``'s is a sort-based dense kernel, 1.6× slower for a 5k × 16 table and 6× for the 5k × 1
        first-order weights at batch 256 (benchmarks/README.md, "Where a small model's step goes"). On CUDA
        ``index_add_`` accumulates with atomics, so ``embedding`` (deterministic) stays."""
        rows = x + self.offsets
        if self.sparse:
            return nn.functional.embedding(rows, self.weight, sparse=True)
        if rows.device.type == "cpu":
            return self.weight.index_select(0, rows.reshape(-1)).view(*rows.shape, self.dim)
        return nn.functional.embedding(rows, self.weight)

    def table(self, name: str) -> torch.Tensor:
        """The embedding rows of one field: float[vocab_size, dim] (a view; index 0 = unknown)."""
        j = self._field(name)
        start = int(self.offsets[j])
        return self.weight[start:start + self.vocab_sizes[j]]

    def lookup(self, name: str, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index`` (field-local, 0 = unknown) of one field's table: float[*index.shape, dim]."""
        if self.sparse:  # through the whole weight: a slice's backward would make the gradient dense
            return nn.functional.embedding(index + self.offsets[self._field(name)], self.weight, sparse=True)
        return nn.functional.embedding(index, self.table(name))

    def _field(self, name: str) -> int:
        if name not in self.field_names:
            from ctrbench.registry import did_you_mean

            raise KeyError(f"no embedding table for field '{name}'{did_you_mean(name, self.field_names)}; "
                           f"fields: {', '.join(self.field_names)}")
        return self.field_names.index(name)


class CTRBackbone(nn.Module):
    """Base class of ID-based CTR models.

    Subclasses build their interaction layers in ``__init__`` from ``self.num_inputs`` (the number of
    field embeddings ``interact`` will see: dataset fields + ``num_extra_fields``) and implement
    ``interact``; most keep the default ``embed`` and the linear ``head``. ``hidden_dim`` must equal the
    width of ``q``. A model never builds its optimizer or picks its device: the trainer does.
    """

    hidden_dim: int
    embed_dim: int

    def __init__(self, fields: Sequence[Field], embed_dim: int, num_extra_fields: int = 0) -> None:
        super().__init__()
        self.fields = [f for f in fields if f.kind == "categorical"]
        self.sequence_fields = [f for f in fields if f.kind == "sequence"]
        self.embed_dim = embed_dim
        self.num_extra_fields = num_extra_fields
        self.embedding = FieldEmbedding(self.fields, embed_dim)

    @property
    def num_inputs(self) -> int:
        return len(self.fields) + self.num_extra_fields

    def embed(self, batch: Batch) -> torch.Tensor:
        """Field embeddings E: float[B, F, d]."""
        return self.embedding(batch.x)

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """Feature interaction: float[B, F(+k), d] → q: float[B, hidden_dim]."""
        raise NotImplementedError

    def head(self, q: torch.Tensor) -> torch.Tensor:
        """q → logit float[B]. Default: one linear layer (created by ``build_head``)."""
        return self.output(q).squeeze(-1)

    def build_head(self, hidden_dim: int) -> None:
        self.hidden_dim = hidden_dim
        self.output = nn.Linear(hidden_dim, 1)

    def linear_logit(self, batch: Batch) -> torch.Tensor | None:
        """First-order term added to the logit (FM, Wide&Deep); ``None`` for models without one."""
        return None

    def forward(self, batch: Batch, extra: torch.Tensor | None = None) -> torch.Tensor:
        """logit float[B]. ``extra``: float[B, k, d] additional field embeddings appended to E."""
        E = self.embed(batch)
        if extra is not None:
            if extra.dim() != 3 or extra.shape[1] != self.num_extra_fields or extra.shape[2] != E.shape[2]:
                raise ValueError(f"{type(self).__name__}: extra must be [B, {self.num_extra_fields}, {E.shape[2]}] "
                                 f"(num_extra_fields, embed_dim), got {list(extra.shape)}")
            E = torch.cat([E, extra.to(E.dtype)], dim=1)
        logit = self.head(self.interact(E))
        first = self.linear_logit(batch)
        return logit if first is None else logit + first
