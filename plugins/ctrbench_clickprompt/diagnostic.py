"""Does PA-MLM align the CTR side with the PLM? The alignment diagnostic stored with every PA-MLM stage.

ClickPrompt's claim rests on the prompts carrying each sample's ID features into the PLM. If they do, the PLM
recovers masked feature values better with the sample's own prompts than with another sample's prompts, and
most of all on ID-value tokens (user and item ids), which the text alone cannot predict. So, on held-out rows
(test rows: PA-MLM never reads them, and no label is used), the same masked positions are scored three ways:
with the true prompts, with the prompts shuffled across the batch, and with no prompts. ``shuffled - true`` on
ID tokens is the gap a board checks against `GATE` (0.05 nats): below it, the prompts act as one shared soft
prefix and a board built on that stage cannot speak to the paper's mechanism.

It also counts the dimensions of the backbone's hidden state q (what the prompt generator reads) that are
constant over the held-out rows: a ReLU unit that PA-MLM drove dead carries nothing into the prompts and nothing
back into finetuning (measured on DNN: a CTR-side learning rate of 1e-2 leaves about half its last layer dead,
docs/methods/clickprompt.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ctrbench.text import IGNORE, mask_tokens, maskable

GATE = 0.05


@dataclass(frozen=True)
class AlignmentDiagnostic:
    """Mean masked-LM loss (nats per masked token) with true / shuffled / no prompts, all and ID tokens."""

    rows: int
    tokens: int
    id_tokens: int
    true: float
    shuffled: float
    none: float
    true_id: float
    shuffled_id: float
    none_id: float
    q_dims: int = 0
    q_constant: int = 0  # dimensions of q with one value on every held-out row (dead ReLU units)
    id_diff_sq: float = float("nan")  # Σ over ID tokens of (shuffled − true loss)²: the gap's spread

    @property
    def id_gap_se(self) -> float:
        """Standard error of `id_gap` as a mean of per-token paired differences (tokens treated as independent:
        a held-out row holds about half an ID token on MovieLens, so clustering by row changes little). NaN for
        stages stored before it existed or with fewer than two ID tokens."""
        n = self.id_tokens
        if n < 2 or not np.isfinite(self.id_diff_sq):
            return float("nan")
        var = (self.id_diff_sq - n * self.id_gap ** 2) / (n - 1)
        return float(np.sqrt(max(var, 0.0) / n))

    @property
    def q_constant_fraction(self) -> float:
        return self.q_constant / self.q_dims if self.q_dims else float("nan")

    @property
    def id_gap(self) -> float:
        return self.shuffled_id - self.true_id

    def passes(self, gate: float = GATE) -> bool:
        return bool(self.id_gap >= gate)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "id_gap": self.id_gap, "id_gap_se": self.id_gap_se,
                "q_constant_fraction": self.q_constant_fraction, "gate": GATE, "passes": self.passes()}


class ValueTokens:
    """Which token positions of a row's text belong to feature values (not template words), per field set.

    A position counts as a value of a field when its token id is one of the tokens of that field's value string
    for that row (tokenized alone): template words are never values, and a value token that also spells a
    template word elsewhere in the row is counted at every position where it occurs (rare; documented).
    """

    def __init__(self, data: Any, tokenizer: Any, fields: list[str] | None = None) -> None:
        self.data = data
        self.tokenizer = tokenizer
        names = [f.name for f in data.fields]
        self.columns = [names.index(n) for n in (fields if fields is not None else names) if n in names]
        self._cache: dict[tuple[int, int], frozenset[int]] = {}

    def _tokens(self, column: int, index: int) -> frozenset[int]:
        key = (column, index)
        if key not in self._cache:
            f = self.data.fields[column]
            vocab = self.data.vocab.get(f.name) or []
            value = vocab[index] if 0 <= index < len(vocab) else str(index)
            ids = self.tokenizer(str(value), add_special_tokens=False)["input_ids"]
            self._cache[key] = frozenset(int(i) for i in ids)
        return self._cache[key]

    def flags(self, rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """bool [B, T]: position t of row b holds a value token of the chosen fields."""
        X = np.asarray(self.data.X[np.asarray(rows.cpu())])
        out = torch.zeros(ids.shape, dtype=torch.bool)
        ids_cpu = ids.cpu()
        for b in range(len(X)):
            allowed: set[int] = set()
            for c in self.columns:
                allowed |= self._tokens(c, int(X[b, c]))
            if allowed:
                out[b] = torch.isin(ids_cpu[b], torch.tensor(sorted(allowed)))
        return out.to(ids.device)


def id_fields(data: Any) -> list[str]:
    """The ID features: categorical fields named ``*_id`` / ``*id`` (user_id, item_id, movie_id, ...)."""
    return [f.name for f in data.fields if f.name.lower().endswith("id")]


@torch.no_grad()
def alignment_diagnostic(model: nn.Module, data: Any, rows: torch.Tensor, device_data: Any, *, mask_prob: float,
                         seed: int, batch_size: int = 256) -> AlignmentDiagnostic:
    """Score the three prompt conditions on the same masked positions of ``rows`` (see the module docstring).

    Masking uses every maskable token (as PA-MLM's default does) with a fixed generator, and the shuffle is a
    fixed derangement-by-roll of the batch, so the three losses differ only by the prompts.
    """
    model.eval()
    plm = model.plm
    special = sorted(plm.tokenizer.all_special_ids)
    ids_of = ValueTokens(data, plm.tokenizer, id_fields(data))
    gen = torch.Generator().manual_seed(seed + 2)
    sums = {k: 0.0 for k in ("true", "shuffled", "none", "true_id", "shuffled_id", "none_id")}
    n_tok = n_id = 0
    diff_sq = 0.0
    q_low = q_high = None
    for start in range(0, len(rows), batch_size):
        batch = device_data.batch(rows[start:start + batch_size])
        q, prompts = model.hidden_and_prompts(batch)
        low, high = q.float().amin(0), q.float().amax(0)
        q_low = low if q_low is None else torch.minimum(q_low, low)
        q_high = high if q_high is None else torch.maximum(q_high, high)
        ids, mask = model.text(batch)
        corrupted, labels = mask_tokens(ids, maskable(ids, mask, special), mask_token_id=plm.mask_token_id,
                                        vocab_size=plm.vocab_size, mask_prob=mask_prob, generator=gen)
        selected = labels != IGNORE
        if not selected.any():
            continue
        is_id = ids_of.flags(batch.idx, ids) & selected
        shuffled = torch.roll(prompts, shifts=1, dims=0) if len(prompts) > 1 else prompts
        id_losses = {}
        for name, p in (("true", prompts), ("shuffled", shuffled), ("none", None)):
            hidden = plm.encode(corrupted, mask, p, model.prompt_mode)
            loss = nn.functional.cross_entropy(plm.mlm_head(hidden[selected]).float(), labels[selected],
                                               reduction="none")
            id_losses[name] = loss[is_id[selected]].double()
            sums[name] += float(loss.sum())
            sums[f"{name}_id"] += float(id_losses[name].sum())
        diff_sq += float(((id_losses["shuffled"] - id_losses["true"]) ** 2).sum())
        n_tok += int(selected.sum())
        n_id += int(is_id.sum())
    mean = lambda k, n: sums[k] / n if n else float("nan")  # noqa: E731
    constant = int(((q_high - q_low) <= 0).sum()) if q_low is not None else 0
    return AlignmentDiagnostic(len(rows), n_tok, n_id, mean("true", n_tok), mean("shuffled", n_tok),
                               mean("none", n_tok), mean("true_id", n_id), mean("shuffled_id", n_id),
                               mean("none_id", n_id), q_dims=0 if q_low is None else len(q_low), q_constant=constant,
                               id_diff_sq=diff_sq)
