"""Types of a dataset's config values, checked against its constructor's annotations.

A suite passes config values as YAML gives them; without a check, ``num_samples: abc`` fails deep inside a
constructor as ``'<' not supported between instances of 'str' and 'int'``. ``check_config_types`` names the
dataset, the key, the expected type and the value instead, and keeps seeds in numpy's range
(``0 <= seed < 2**32``). ``typed`` wraps a factory so every call is checked (the built-in datasets are
registered through it); the wrapper keeps the factory's signature, so config-key checks and docs see the same
parameters.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ctrbench.errors import DataError

T = TypeVar("T")

MAX_SEED = 2**32
_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null",
          list: "a list", tuple: "a list", dict: "a mapping", Path: "a path (string)"}


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """Parameter annotations of a class's ``__init__``, a function, or the function a ``partial`` wraps."""
    target: Any = factory
    while isinstance(target, functools.partial):
        target = target.func
    target = inspect.unwrap(target)
    if inspect.isclass(target):
        target = target.__init__
    try:
        return typing.get_type_hints(target)
    except Exception:  # an annotation that cannot be resolved: no type checks, never a crash
        return {}


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) is typing.Union or isinstance(hint, types.UnionType)


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if _is_union(hint):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is Path:
        return isinstance(value, (str, Path))
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (tuple, list, set, frozenset) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if origin is tuple and args and Ellipsis not in typing.get_args(hint) and len(value) != len(args):
            return False
        return not args or all(any(_matches(v, a) for a in args) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True  # a type a YAML value cannot be checked against here: left to the factory


def describe(hint: Any) -> str:
    """``int | None`` → "an integer or null", ``tuple[float, float, float]`` → "a list of 3 numbers"."""
    if _is_union(hint):
        return " or ".join(dict.fromkeys(describe(h) for h in typing.get_args(hint)))
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if not args:
            return "a list"
        inner = describe(args[0]).removeprefix("an ").removeprefix("a ")
        if origin is tuple and Ellipsis not in typing.get_args(hint) and len(args) > 1:
            return f"a list of {len(args)} {inner}s"
        return f"a list of {inner}s"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_config_types(what: str, factory: Callable[..., Any], config: dict[str, Any]) -> None:
    """Raise a one-line DataError ``"<what>: <key> must be <type>, got <type> <value>"`` for the first value
    of ``config`` whose type does not match ``factory``'s annotation, or a seed outside ``0 .. 2**32 - 1``."""
    hints = _hints(factory)
    for key, value in config.items():
        hint = hints.get(key)
        if hint is not None and not _matches(value, hint):
            raise DataError(f"{what}: {key} must be {describe(hint)}, got {type(value).__name__} {_shown(value)}")
        if key == "seed" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and not 0 <= value < MAX_SEED:
            raise DataError(f"{what}: seed must be in 0 .. 2**32 - 1 (numpy's seed range), got {_shown(value)}")


def typed(factory: Callable[..., T], what: str) -> Callable[..., T]:
    """``factory`` with its keyword config checked by ``check_config_types`` first (same signature)."""

    @functools.wraps(factory)
    def create(*args: Any, **config: Any) -> T:
        check_config_types(what, factory, config)
        return factory(*args, **config)

    return create
