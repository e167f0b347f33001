"""Registers every built-in CTR backbone: each module of this package that defines a class decorated
with ``@backbone(...)`` (from ``ctrbench.models.base``). Adding a model = adding one file; nothing to
edit here. Config defaults are each class's keyword defaults.

Registration reads the decorators and constructor signatures from the modules' source (`ctrbench.lazy`), so
`ctrbench list` and `ctrbench validate` do not import torch; a backbone's module is imported when the backbone
is first built. A module whose decorator arguments are not plain literals is imported to register it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import ctrbench_ctr
from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.lazy import NotStatic, declared_classes, lazy


def _modules() -> list[str]:
    return [f"ctrbench_ctr.{m.name}" for m in pkgutil.iter_modules(ctrbench_ctr.__path__) if m.name != "plugin"]


def discover() -> list[type]:
    """The decorated backbone classes of this package, sorted by registered name (imports every module)."""
    from ctrbench.models.base import backbone_info

    found = []
    for name in _modules():
        module = importlib.import_module(name)
        found += [obj for obj in vars(module).values()
                  if backbone_info(obj) is not None and obj.__module__ == module.__name__]
    return sorted(found, key=lambda cls: backbone_info(cls).name)


def _metadata(name: str, *, summary: str, paper: str, q: str) -> dict[str, str]:
    """``@backbone``'s arguments (``ctrbench.models.base.backbone``), as read from the source."""
    return {"name": name, "summary": summary, "paper": paper, "q": q}


def declared() -> list[tuple[dict[str, str], Callable[..., Any]]]:
    """``(metadata, factory)`` of every decorated backbone, sorted by name, without importing the modules
    (the factories import them when called)."""
    found = []
    for module in _modules():
        try:
            found += [(_metadata(*args, **kwargs), lazy(f"{module}:{cls}"))
                      for cls, args, kwargs in declared_classes(module, "backbone")]
        except (NotStatic, TypeError):  # not plain literals (or a changed decorator): import to read them
            from ctrbench.models.base import backbone_info

            imported = importlib.import_module(module)
            for obj in vars(imported).values():
                info = backbone_info(obj)
                if info is not None and obj.__module__ == module:
                    found.append((_metadata(info.name, summary=info.summary, paper=info.paper, q=info.q), obj))
    return sorted(found, key=lambda item: item[0]["name"])


@hookimpl
def ctrbench_register_ctr_backbones(register: Register) -> None:
    for meta, factory in declared():
        register(meta["name"], factory, summary=meta["summary"], paper=meta["paper"], q=meta["q"])
