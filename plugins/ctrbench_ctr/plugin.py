"""Registers every built-in CTR backbone: each module of this package that defines a class decorated
with ``@backbone(...)`` (from ``ctrbench.models.base``). Adding a model = adding one file; nothing to
edit here. Config defaults are each class's keyword defaults.
"""

from __future__ import annotations

import importlib
import pkgutil

import ctrbench_ctr
from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.models.base import backbone_info


def discover() -> list[type]:
    """The decorated backbone classes of this package, sorted by registered name."""
    found = []
    for mod in pkgutil.iter_modules(ctrbench_ctr.__path__):
        if mod.name == "plugin":
            continue
        module = importlib.import_module(f"ctrbench_ctr.{mod.name}")
        found += [obj for obj in vars(module).values()
                  if backbone_info(obj) is not None and obj.__module__ == module.__name__]
    return sorted(found, key=lambda cls: backbone_info(cls).name)


@hookimpl
def ctrbench_register_ctr_backbones(register: Register) -> None:
    for cls in discover():
        info = backbone_info(cls)
        register(info.name, cls, summary=info.summary, paper=info.paper, q=info.q)
