"""Types of a component's config values, checked against its factory's annotations.

A suite passes config values as YAML gives them; without a check, ``num_samples: abc`` fails deep inside a
constructor as ``'<' not supported between instances of 'str' and 'int'``, and ``embed_dim: "8"`` in every
run. ``config_type_problems`` lists, for every bad key, the key, the expected type and the value, and keeps
seeds in numpy's range (``0 <= seed < 2**32``); ``missing_config_keys`` lists the required keyword arguments a
config leaves out. ``ctrbench validate`` runs both (through ``ctrbench.registry.check_config``) for datasets,
CTR backbones, PLMs, methods and executors before anything runs. ``check_config_types`` raises them as one
``DataError`` line, and ``typed`` wraps a factory so every call is checked (the built-in datasets are
registered through it); the wrapper keeps the factory's signature, so config-key checks and docs see the same
parameters.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
import typing
from collections import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ctrbench.errors import DataError

T = TypeVar("T")

MAX_SEED = 2**32
_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null",
          list: "a list", tuple: "a list", dict: "a mapping", Path: "a path (string)"}


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """Parameter annotations of a class's ``__init__``, a function, or the function a ``partial`` wraps; a
    factory that declares its keywords through ``__signature__`` (``def f(**config)``) gets those of the
    signature."""
    target: Any = inspect.unwrap(factory)
    while isinstance(target, functools.partial):  # typed(partial(Amazon, ...)): unwrap, then partial, ...
        target = inspect.unwrap(target.func)
    if inspect.isclass(target):
        target = target.__init__
    try:
        hints = dict(typing.get_type_hints(target))
    except Exception:  # an annotation that cannot be resolved: no type checks, never a crash
        hints = {}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return hints
    namespace = dict(vars(sys.modules.get(getattr(target, "__module__", ""), typing)))
    for name, param in params.items():
        if name in hints or param.annotation is inspect.Parameter.empty:
            continue
        annotation = param.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # noqa: S307 - an annotation string of the factory's module
            except Exception:
                continue
        hints[name] = annotation
    return hints


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
    if origin in (tuple, list, set, frozenset, abc.Sequence) or hint in (tuple, list):
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
    if origin in (tuple, list, abc.Sequence):
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


def config_type_problems(factory: Callable[..., Any], config: dict[str, Any]) -> list[str]:
    """``"<key> must be <type>, got <type> <value>"`` for every value of ``config`` whose type does not match
    ``factory``'s annotation, and for a seed outside ``0 .. 2**32 - 1``; empty when all are fine."""
    hints = _hints(factory)
    problems: list[str] = []
    for key, value in config.items():
        hint = hints.get(key)
        if hint is not None and not _matches(value, hint):
            problems.append(f"{key} must be {describe(hint)}, got {type(value).__name__} {_shown(value)}")
        elif key == "seed" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and not 0 <= value < MAX_SEED:
            problems.append(f"seed must be in 0 .. 2**32 - 1 (numpy's seed range), got {_shown(value)}")
    return problems


def missing_config_keys(factory: Callable[..., Any], config: dict[str, Any],
                        reserved: tuple[str, ...] = ()) -> list[str]:
    """The keyword arguments of ``factory`` without a default that ``config`` does not set (``reserved``
    ones are passed by ctrbench itself, e.g. a backbone's ``fields``)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return []
    return [n for n, p in params.items()
            if p.default is inspect.Parameter.empty and n not in config and n not in reserved
            and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def check_config_types(what: str, factory: Callable[..., Any], config: dict[str, Any],
                       error: type[Exception] = DataError) -> None:
    """Raise one line ``"<what>: <key> must be <type>, got <type> <value>[; <next bad key> ...]"`` (a
    ``DataError`` unless ``error`` says otherwise) naming every value of ``config`` whose type does not match
    ``factory``'s annotation, or a seed outside ``0 .. 2**32 - 1``."""
    problems = config_type_problems(factory, config)
    if problems:
        raise error(f"{what}: {'; '.join(problems)}")


def typed(factory: Callable[..., T], what: str) -> Callable[..., T]:
    """``factory`` with its keyword config checked by ``check_config_types`` first (same signature)."""

    @functools.wraps(factory)
    def create(*args: Any, **config: Any) -> T:
        check_config_types(what, factory, config)
        return factory(*args, **config)

    return create
