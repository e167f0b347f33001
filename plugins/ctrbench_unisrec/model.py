"""UniSRec's model: frozen PLM item embeddings → MoE adaptor → Transformer; its two pretraining objectives
(§2.4: sequence-item and sequence-sequence contrastive learning); and the CTR form the benchmark fine-tunes.

Histories arrive as the dataset stores them (most recent first, left-aligned, 0 = padding) and are put oldest
first for the Transformer, whose output at the most recent item is the sequence representation ``s``.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrbench.models.base import Batch
from ctrbench.text import info_nce
from ctrbench_unisrec.config import UniSRecConfig
from ctrbench_unisrec.layers import MoEAdaptor, SequenceEncoder, chronological_items


class UniSRec(nn.Module):
    """Adaptor + sequence encoder over a frozen item-embedding table.

    ``plm``: float[num_items, plm_size], the PLM's embedding of each item's text (row 0, the padding item, is
    zero); ``plm_aug``: the same of the word-dropped texts (word-drop augmentation), or None. Both are buffers:
    nothing here trains the PLM or its outputs.
    """

    def __init__(self, plm: torch.Tensor, plm_aug: torch.Tensor | None, max_length: int,
                 cfg: UniSRecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("plm", plm.float(), persistent=False)
        self.register_buffer("plm_aug", plm_aug.float() if plm_aug is not None else None, persistent=False)
        self.adaptor = MoEAdaptor(cfg.n_exps, plm.shape[1], cfg.hidden_size, cfg.adaptor_dropout, cfg.gate_noise)
        self.encoder = SequenceEncoder(max_length, cfg.hidden_size, cfg.n_layers, cfg.n_heads, cfg.inner_size,
                                       cfg.dropout)

    def adapt(self, index: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Adapted representations of items ``index`` int64[...] → float[..., hidden_size], from ``table`` (default:
        the clean embeddings). Each distinct item of the call is adapted once and gathered (a batch of histories
        names far fewer items than it has slots); exact in eval, and in training the adaptor's dropout and gate
        noise are drawn per distinct item of the batch rather than per slot."""
        uniq, inverse = torch.unique(index, return_inverse=True)
        return self.adaptor((self.plm if table is None else table)[uniq])[inverse]

    def items(self, index: torch.Tensor) -> torch.Tensor:
        """Adapted item representations v: int64[...] → float[..., hidden_size]."""
        return self.adapt(index)

    def sequence(self, seq: torch.Tensor, word_dropped: torch.Tensor | None = None) -> torch.Tensor:
        """``s`` for oldest-first item sequences int64[B, L]; ``word_dropped``: bool[B, L], positions whose item is
        read from the word-dropped table (word-drop augmentation)."""
        emb = self.adapt(seq)
        if word_dropped is not None:
            emb = torch.where(word_dropped.unsqueeze(-1), self.adapt(seq, self.plm_aug), emb)
        return self.encoder(emb, seq != 0)

    def history(self, history: torch.Tensor) -> torch.Tensor:
        """``s`` for histories as the dataset stores them (most recent first)."""
        return self.sequence(chronological_items(history))

    # -- pretraining (§2.4) ---------------------------------------------------------------------------------
    def pretrain_loss(self, seq: torch.Tensor, target: torch.Tensor, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ℓ_S-I, ℓ_S-S) for oldest-first sequences int64[B, L] and their next items int64[B].

        ℓ_S-I (Eq. 7): each sequence must pick its own next item among the batch's next items; ℓ_S-S (Eq. 8): its
        augmented copy among the batch's augmented sequences. Cosine similarity / τ, one direction, and sequences
        with the same next item are not each other's negatives (the authors' ``same_pos_id``).
        """
        s = self.sequence(seq)
        v = self.items(target)
        seq_item = info_nce(s, v, self.cfg.temperature, symmetric=False, keys=target)
        s_aug = self.sequence(*self.augment(seq, generator))
        seq_seq = info_nce(s, s_aug, self.cfg.temperature, symmetric=False, keys=target)
        return seq_item, seq_seq

    def augment(self, seq: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The authors' augmentation, one kind per batch: with probability ``item_drop_coefficient`` item drop
        (each item but the oldest dropped with ``item_drop_ratio``, the rest moved up), else word drop (each
        position's embedding taken, with ``item_drop_ratio``, from the word-dropped table). Returns the augmented
        sequence and, for word drop, the positions read from the word-dropped table. Draws on ``generator`` (CPU),
        so a seed gives the same augmentation on any device."""
        cfg = self.cfg
        draw = torch.rand(seq.shape, generator=generator).to(seq.device)
        drop = draw < cfg.item_drop_ratio
        use_item_drop = self.plm_aug is None or float(torch.rand((), generator=generator)) < cfg.item_drop_coefficient
        if use_item_drop:
            keep = ~drop & (seq != 0)
            keep[:, 0] = seq[:, 0] != 0  # the authors always keep the first (oldest) item
            order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices  # kept items first, in order
            steps = torch.arange(seq.shape[1], device=seq.device)
            out = torch.gather(seq, 1, order).masked_fill(steps >= keep.sum(dim=1, keepdim=True), 0)
            return out, None
        return seq, drop & (seq != 0)


class UniSRecCTR(nn.Module):
    """UniSRec for CTR: ``s`` (the user's history) and ``v`` (the target item) enter the run's CTR backbone as two
    extra field embeddings (a shared linear map hidden_size → embed_dim); the backbone's head gives the logit,
    trained with BCE. ``forward(batch) -> logit [B]``."""

    def __init__(self, unisrec: UniSRec, ctr: nn.Module, item_col: int, history: str = "history") -> None:
        super().__init__()
        self.unisrec, self.ctr = unisrec, ctr
        self.item_col, self.history_name = item_col, history
        self.proj = nn.Linear(unisrec.cfg.hidden_size, ctr.embed_dim)

    def representations(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, v): float[B, hidden_size] each."""
        if self.history_name not in batch.sequences:
            raise ValueError(f"unisrec: the batch has no sequences['{self.history_name}']; build the dataset with "
                             "a history (history_length > 0)")
        s = self.unisrec.history(batch.sequences[self.history_name])
        v = self.unisrec.items(batch.x[:, self.item_col])
        return s, v

    def forward(self, batch: Batch) -> torch.Tensor:
        s, v = self.representations(batch)
        extra = self.proj(torch.stack([s, v], dim=1))  # [B, 2, embed_dim]
        return self.ctr(batch, extra)

