"""Name → factory registries, one per component kind, filled by plugins.

Why a registry and not imports: the core never imports ``plugins/``; it only knows names. Metadata
(summary, paper, origin plugin) travels with each entry so ``ctrbench list`` and provenance can show
where a component came from.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ctrbench.errors import PluginError

T = TypeVar("T")

KINDS = ("datasets", "ctr", "plm", "methods", "executors")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component."""

    name: str
    factory: Callable[..., T]
    kind: str
    plugin: str
    summary: str = ""
    paper: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def create(self, **config: Any) -> T:
        """Build the component; unknown config keys are an error with "did you mean"."""
        check_config_keys(self.factory, config, f"{self.kind} '{self.name}'")
        return self.factory(**config)


def did_you_mean(name: str, candidates: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def check_config_keys(factory: Callable[..., Any], config: dict[str, Any], what: str,
                      reserved: tuple[str, ...] = ()) -> None:
    """Reject config keys that are not keyword arguments of ``factory`` (FuxiCTR's silent **kwargs trap)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items()
               if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
               and n not in reserved]
    for key in config:
        if key not in allowed:
            raise PluginError(f"{what}: unknown config key '{key}'{did_you_mean(key, allowed)}; "
                              f"allowed: {', '.join(sorted(allowed)) or '(none)'}")


def config_defaults(factory: Callable[..., Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keyword defaults of a factory, for documentation and `ctrbench list`."""
    out: dict[str, Any] = {}
    for name, p in inspect.signature(factory).parameters.items():
        if name in skip or p.default is inspect.Parameter.empty:
            continue
        out[name] = p.default
    return out


class Registry(Generic[T]):
    """Components of one kind, by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, factory: Callable[..., T], *, plugin: str, summary: str = "",
            paper: str = "", **metadata: Any) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin '{plugin}' registered a {self.kind} with an empty or non-string name")
        if name in self._entries:
            other = self._entries[name].plugin
            raise PluginError(f"{self.kind} '{name}' is registered twice: by plugin '{other}' and by plugin '{plugin}'")
        if not callable(factory):
            raise PluginError(f"plugin '{plugin}' registered {self.kind} '{name}' with a non-callable factory")
        self._entries[name] = Entry(name, factory, self.kind, plugin, summary, paper, dict(metadata))

    def get(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            known = sorted(self._entries)
            raise PluginError(f"unknown {self.kind} '{name}'{did_you_mean(name, known)}; "
                              f"known: {', '.join(known) or '(none)'}") from None

    def find(self, pattern: str = "*") -> list[Entry[T]]:
        """Entries whose name matches a glob, e.g. ``find('*dcn*')``."""
        return [e for n, e in sorted(self._entries.items()) if fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
