"""The plugin manager: the only global state in ctrbench.

Loads every ``ctrbench`` entry point, keeps going when one fails to import (the failure is recorded by
plugin name, shown by ``ctrbench plugins``, and only becomes an error if a suite needs a component that
plugin would have provided), and fills one ``Registry`` per component kind. A name registered by two plugins
is logged as a warning and only becomes an error when a suite uses that name, so ``ctrbench list`` and
``ctrbench plugins`` still work to find the clash.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import pluggy

from ctrbench import hookspecs
from ctrbench.errors import PluginError
from ctrbench.kinds import KINDS
from ctrbench.registry import Registry

log = logging.getLogger(__name__)

DISABLE_ENV = "CTRBENCH_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """One entry point and what happened when it was loaded."""

    name: str
    module: str
    distribution: str
    version: str
    status: str  # "loaded" | "failed" | "disabled"
    error: str = ""


@dataclass
class Plugins:
    """The loaded plugin manager and the registries its plugins filled."""

    pm: pluggy.PluginManager
    registries: dict[str, Registry[Any]]
    infos: list[PluginInfo] = field(default_factory=list)

    def registry(self, kind: str) -> Registry[Any]:
        return self.registries[kind]

    @property
    def failed(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.status == "failed"]

    def failure_hint(self) -> str:
        """Appended to unknown-name errors: the missing component may live in a plugin that failed."""
        if not self.failed:
            return ""
        return " [plugins that failed to import: " + "; ".join(f"{i.name}: {i.error}" for i in self.failed) + "]"

    @property
    def duplicates(self) -> list[str]:
        """One message per component name that two or more plugins registered."""
        return [msg for registry in self.registries.values() for msg in registry.duplicates]

    def unregistered_hint(self, name: str = "") -> str:
        """Appended to unknown-name errors: an installed distribution that depends on ctrbench but declares no
        ``ctrbench`` entry point (never added, or added to ``pyproject.toml`` without reinstalling)."""
        found = unregistered_distributions(name)
        if not found:
            return ""
        return " [" + "; ".join(found) + "]"

    def notify_run_finished(self, spec: Any, result: Any) -> None:
        # Each implementation is called on its own so one broken tracker neither loses a stored result
        # nor silences the other trackers (pluggy would stop at the first exception).
        for impl in self.pm.hook.ctrbench_run_finished.get_hookimpls():
            try:
                impl.function(spec=spec, result=result)
            except Exception as exc:
                log.warning("plugin '%s': ctrbench_run_finished raised %s: %s", impl.plugin_name,
                            type(exc).__name__, exc)


def _disabled_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    eps = importlib.metadata.entry_points(group=hookspecs.PROJECT)
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in eps:  # the same distribution can be visible twice (editable + site); keep the first
        seen.setdefault(ep.name, ep)
    return sorted(seen.values(), key=lambda e: e.name)


def _normalise(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _requires_ctrbench(dist: importlib.metadata.Distribution) -> bool:
    return any(re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0].lower() == hookspecs.PROJECT for r in dist.requires or ())


def _source_declares_entry_point(dist: importlib.metadata.Distribution) -> str:
    """For a local (editable or path) install: its source ``pyproject.toml`` when that declares a ``ctrbench``
    entry point, else ""."""
    try:
        url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    except (ValueError, OSError):
        return ""
    if not url.startswith("file://"):
        return ""
    pyproject = os.path.join(url[len("file://"):], "pyproject.toml")
    try:
        with open(pyproject, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return ""
    return pyproject if re.search(r"^\[project\.entry-points\.\"?ctrbench\"?\]", text, re.M) else ""


def _distributions() -> list[importlib.metadata.Distribution]:
    return list(importlib.metadata.distributions())


def unregistered_distributions(name: str = "", limit: int = 3) -> list[str]:
    """How to fix each installed distribution that requires ctrbench but declares no ``ctrbench`` entry point:
    reinstall it (its source has one) or add one. Distributions whose name shares a word with ``name`` first."""
    words = set(_normalise(name).split("-")) - {"", hookspecs.PROJECT, "plugin"}
    found: list[tuple[bool, str]] = []
    seen: set[str] = set()
    for dist in _distributions():
        dname = dist.metadata["Name"] or ""
        key = _normalise(dname)
        if not dname or key in seen or key == hookspecs.PROJECT:
            continue
        seen.add(key)
        if any(ep.group == hookspecs.PROJECT for ep in dist.entry_points) or not _requires_ctrbench(dist):
            continue
        source = _source_declares_entry_point(dist)
        if source:
            fix = (f"distribution '{dname}' is installed without the ctrbench entry point its {source} declares: "
                   "entry points are read at install time, reinstall it (pip install -e <its folder>)")
        else:
            fix = (f"distribution '{dname}' requires ctrbench but declares no ctrbench entry point: add "
                   "`[project.entry-points.ctrbench]` with `<plugin name> = \"<module with the hooks>\"` to its "
                   "pyproject.toml and reinstall it")
        found.append((not words & set(key.split("-")), fix))
    return [fix for _, fix in sorted(found)[:limit]]


def load_plugins(extra: list[tuple[str, object]] | None = None) -> Plugins:
    """Build a fresh plugin manager from the installed entry points (plus ``extra`` (name, module) pairs).

    ``extra`` lets tests register an in-memory plugin without installing a distribution.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    disabled = _disabled_names()
    infos: list[PluginInfo] = []
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        if ep.name in disabled:
            infos.append(PluginInfo(ep.name, ep.value, dist, version, "disabled"))
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # report by name, keep loading the others
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.warning("plugin '%s' (%s) failed to import: %s", ep.name, ep.value, msg)
            infos.append(PluginInfo(ep.name, ep.value, dist, version, "failed", msg))
            continue
        infos.append(PluginInfo(ep.name, ep.value, dist, version, "loaded"))
    for name, module in extra or []:
        if name in disabled:
            infos.append(PluginInfo(name, repr(module), "(in-process)", "", "disabled"))
            continue
        pm.register(module, name=name)
        infos.append(PluginInfo(name, repr(module), "(in-process)", "", "loaded"))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin '{exc.plugin}' implements a hook that ctrbench does not define: {exc}") from None

    registries: dict[str, Registry[Any]] = {kind.name: Registry(kind.name) for kind in KINDS}
    for kind in KINDS:
        hook_name = kind.hook
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin_name = impl.plugin_name
            registry = registries[kind.name]

            def register(name: str, factory: Any, _p: str = plugin_name, _r: Registry[Any] = registry,
                         **meta: Any) -> None:
                _r.add(name, factory, plugin=_p, **meta)

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin '{plugin_name}' raised in {hook_name}: {type(exc).__name__}: {exc}") from exc
    plugins = Plugins(pm, registries, infos)
    for message in plugins.duplicates:
        log.warning("%s", message)
    return plugins
