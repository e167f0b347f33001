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

from ctrbench.configtypes import config_type_problems, missing_config_keys
from ctrbench.errors import PluginError
from ctrbench.kinds import NAMES

T = TypeVar("T")

KINDS = NAMES  # the kind names, from the one table in ``ctrbench.kinds``


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


def _allowed_keys(factory: Callable[..., Any], reserved: tuple[str, ...]) -> list[str] | None:
    """The keyword arguments a config may set, or None when any key goes (``**kwargs``, no signature)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n, p in params.items()
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            and n not in reserved]


def _unknown_key_problems(factory: Callable[..., Any], config: dict[str, Any],
                          reserved: tuple[str, ...]) -> list[str]:
    allowed = _allowed_keys(factory, reserved)
    if allowed is None:
        return []
    unknown = [f"unknown config key '{key}'{did_you_mean(key, allowed)}" for key in config if key not in allowed]
    if unknown:
        unknown[-1] += f"; allowed: {', '.join(sorted(allowed)) or '(none)'}"
    return unknown


def check_config_keys(factory: Callable[..., Any], config: dict[str, Any], what: str,
                      reserved: tuple[str, ...] = ()) -> None:
    """Reject config keys that are not keyword arguments of ``factory`` (FuxiCTR's silent **kwargs trap);
    every unknown key is named in the one-line error."""
    problems = _unknown_key_problems(factory, config, reserved)
    if problems:
        raise PluginError(f"{what}: {'; '.join(problems)}")


def config_problems(factory: Callable[..., Any], config: dict[str, Any],
                    reserved: tuple[str, ...] = ()) -> list[str]:
    """Everything wrong with a component config, checked against its factory before anything runs: unknown
    keys (with "did you mean"), values whose type does not match the factory's annotations
    (``ctrbench.configtypes``), and required keyword arguments the config leaves out."""
    problems = _unknown_key_problems(factory, config, reserved)
    known = {k: v for k, v in config.items() if k not in reserved}
    problems += config_type_problems(factory, known)
    missing = missing_config_keys(factory, config, reserved)
    if missing:
        problems.append(f"missing required config key{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(repr(m) for m in missing)}")
    return problems


def check_config(factory: Callable[..., Any], config: dict[str, Any], what: str,
                 reserved: tuple[str, ...] = ()) -> None:
    """Raise one ``PluginError`` line ``"<what>: <problem>; <problem> ..."`` naming every problem
    ``config_problems`` finds (not only the first)."""
    problems = config_problems(factory, config, reserved)
    if problems:
        raise PluginError(f"{what}: {'; '.join(problems)}")


def config_defaults(factory: Callable[..., Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keyword defaults of a factory, for documentation and `ctrbench list`."""
    out: dict[str, Any] = {}
    for name, p in inspect.signature(factory).parameters.items():
        if name in skip or p.default is inspect.Parameter.empty:
            continue
        out[name] = p.default
    return out


class Registry(Generic[T]):
    """Components of one kind, by name.

    A name registered by two plugins is not an error at load time, so ``ctrbench list`` and ``ctrbench
    plugins`` (the commands that show the clash) keep working: ``find`` shows every registration, and
    ``get`` of that name, which any suite using it reaches at validation, raises a one-line ``PluginError``
    naming both plugins.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._clashes: dict[str, list[Entry[T]]] = {}  # name -> the later registrations of a taken name

    def add(self, name: str, factory: Callable[..., T], *, plugin: str, summary: str = "",
            paper: str = "", **metadata: Any) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin '{plugin}' registered a {self.kind} with an empty or non-string name")
        if not callable(factory):
            raise PluginError(f"plugin '{plugin}' registered {self.kind} '{name}' with a non-callable factory")
        entry = Entry(name, factory, self.kind, plugin, summary, paper, dict(metadata))
        if name in self._entries:
            self._clashes.setdefault(name, []).append(entry)
            return
        self._entries[name] = entry

    def duplicate_error(self, name: str) -> str:
        """``"ctr 'dnn' is registered twice: by plugin 'a' and by plugin 'b'; …"``, or "" for a unique name."""
        if name not in self._clashes:
            return ""
        plugins = [e.plugin for e in (self._entries[name], *self._clashes[name])]
        times = "twice" if len(plugins) == 2 else f"{len(plugins)} times"
        by = ", ".join(f"by plugin '{p}'" for p in plugins[:-1]) + f" and by plugin '{plugins[-1]}'"
        return (f"{self.kind} '{name}' is registered {times}: {by}; rename or uninstall one, or disable its "
                f"plugin with CTRBENCH_DISABLE_PLUGINS=<plugin name>")

    @property
    def duplicates(self) -> list[str]:
        """One message per name registered more than once (see ``duplicate_error``)."""
        return [self.duplicate_error(name) for name in sorted(self._clashes)]

    def get(self, name: str) -> Entry[T]:
        if name in self._clashes:
            raise PluginError(self.duplicate_error(name))
        try:
            return self._entries[name]
        except KeyError:
            known = sorted(self._entries)
            raise PluginError(f"unknown {self.kind} '{name}'{did_you_mean(name, known)}; "
                              f"known: {', '.join(known) or '(none)'}") from None

    def find(self, pattern: str = "*") -> list[Entry[T]]:
        """Entries whose name matches a glob, e.g. ``find('*dcn*')``; a name registered by several plugins
        gives one entry per plugin."""
        return [e for n, e in sorted(self._entries.items()) if fnmatch.fnmatch(n, pattern)
                for e in (e, *self._clashes.get(n, ()))]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
