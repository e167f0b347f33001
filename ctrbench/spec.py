"""RunSpec: one fully resolved run, identified by the hash of its canonical JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ctrbench.hashing import canonical_json, content_hash  # re-exported: the runner, needs and stages use them

__all__ = ["ComponentRef", "RunSpec", "canonical_json", "content_hash"]


@dataclass(frozen=True)
class ComponentRef:
    """A component by registry name plus its config (the factory's keyword arguments)."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's result; ``run_id`` hashes all of it except ``labels``.

    ``labels`` are the human coordinates of the run inside its suite (grid values, variant name) used
    to lay out leaderboards; they do not influence the result, so they are not part of the identity.
    """

    suite: str
    dataset: ComponentRef
    method: ComponentRef
    ctr: ComponentRef | None
    plm: ComponentRef | None
    train: dict[str, Any]
    seed: int
    labels: dict[str, str] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("labels")
        d.pop("suite")
        return d

    @property
    def run_id(self) -> str:
        return content_hash(self.identity())

    def config_key(self) -> tuple[tuple[str, str], ...]:
        """The run's row in a leaderboard: its labels without the seed and dataset."""
        return tuple(sorted((k, v) for k, v in self.labels.items() if k not in ("seed", "dataset")))

    def config_label(self) -> str:
        """Short human name of the run's configuration, e.g. ``dcnv2`` or ``dnn · roberta-base``."""
        parts = [v for _, v in self.config_key()]
        return " · ".join(parts) or self.method.name

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_id"] = self.run_id
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        def ref(x: dict[str, Any] | None) -> ComponentRef | None:
            return None if x is None else ComponentRef(x["name"], dict(x.get("config") or {}))

        return cls(suite=d["suite"], dataset=ref(d["dataset"]), method=ref(d["method"]), ctr=ref(d.get("ctr")),
                   plm=ref(d.get("plm")), train=dict(d.get("train") or {}), seed=int(d["seed"]),
                   labels=dict(d.get("labels") or {}))
