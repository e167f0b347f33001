"""Factories registered by name that import their code only when called.

`ctrbench list`, `ctrbench validate` and the suite checks need a component's name, its registration metadata
and its config signature, never its code; but importing a backbone or a dataset module imports torch or pandas
(seconds). ``lazy("package.module:Name")`` is a factory for ``Name`` (a class or a function) whose
``inspect.signature`` is read from ``package/module.py``'s source without running it, and which imports
``package.module`` the first time it is called. Where the source does not say the signature plainly (a default
that is not a literal or a module constant, a ``__signature__`` set at import, ``**kwargs``, an inherited
``__init__``), the signature comes from the imported object instead: always correct, only not lazy.
`declared_classes` finds the classes of a module that carry a decorator, with the decorator's literal
arguments, so the built-in CTR plugin registers its backbones without importing them.

Type annotations of a static signature are resolved against builtins, ``typing``, ``collections.abc`` and
``pathlib.Path`` (what config annotations use); an annotation naming anything else (``Sequence[Field]``) is
left unresolved, so the value is not type-checked before the run (the factory still gets it).
``tests/test_cli_imports.py`` checks that every built-in lazy factory has its implementation's signature,
metadata and type hints.
"""

from __future__ import annotations

import ast
import builtins
import collections.abc
import functools
import importlib
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctrbench.errors import PluginError


class NotStatic(Exception):
    """The source does not say it plainly; import the module to find out."""


_NAMESPACE: dict[str, Any] = {
    **vars(builtins),
    **{n: getattr(typing, n) for n in typing.__all__ if hasattr(typing, n)},
    **{n: getattr(collections.abc, n) for n in collections.abc.__all__},
    "Path": Path,
}


@functools.lru_cache(maxsize=128)
def _parsed(module: str) -> tuple[ast.Module, str]:
    """The module's syntax tree and the package relative imports start from, without executing the module
    (``find_spec`` imports the parent packages only)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise NotStatic(f"{module}: {exc}") from None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise NotStatic(f"{module}: no Python source")
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), spec.origin)
    except (OSError, SyntaxError, ValueError) as exc:
        raise NotStatic(f"{module}: {exc}") from None
    package = module if spec.submodule_search_locations is not None else module.rpartition(".")[0]
    return tree, package


def _constant(module: str, name: str, depth: int = 0) -> Any:
    """The value of a module-level ``NAME = <literal>``, following ``from X import NAME`` (a few levels)."""
    if depth > 4:
        raise NotStatic(name)
    tree, package = _parsed(module)
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == name:
                    return _value(module, node.value, depth)
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple) \
                        and len(target.elts) == len(node.value.elts):  # A, B = "a", "b"
                    for t, v in zip(target.elts, node.value.elts, strict=True):
                        if isinstance(t, ast.Name) and t.id == name:
                            return _value(module, v, depth)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name \
                and node.value is not None:
            return _value(module, node.value, depth)
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                        if node.level else node.module
                    if source is None:
                        raise NotStatic(name)
                    return _constant(source, alias.name, depth + 1)
    raise NotStatic(f"{module}.{name}")


def _value(module: str, node: ast.expr, depth: int = 0) -> Any:
    """A literal, or the name of a module constant (``source: str = AUTO``)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Name):
        return _constant(module, node.id, depth + 1)
    raise NotStatic(ast.unparse(node))


def _definition(module: str, qualname: str) -> ast.ClassDef | ast.FunctionDef:
    tree, _ = _parsed(module)
    body: list[ast.stmt] = tree.body
    found: ast.ClassDef | ast.FunctionDef | None = None
    for part in qualname.split("."):
        found = next((n for n in body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == part), None)
        if found is None:
            raise NotStatic(f"{module}:{qualname}")
        body = found.body
    assert found is not None
    if _signature_set_elsewhere(tree, qualname.split(".")[0]):
        raise NotStatic(f"{module}:{qualname}: __signature__ is assigned")
    return found


def _signature_set_elsewhere(tree: ast.Module, name: str) -> bool:
    """``name.__signature__ = ...`` at module level: the real signature is decided at import."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        for t in targets:
            if isinstance(t, ast.Attribute) and t.attr == "__signature__" and isinstance(t.value, ast.Name) \
                    and t.value.id == name:
                return True
    return False


def static_signature(module: str, qualname: str) -> inspect.Signature:
    """The signature of ``module.qualname`` (a class's ``__init__`` without ``self``, or a function), read from
    the source; `NotStatic` where the source does not say it plainly."""
    node = _definition(module, qualname)
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None or init.decorator_list:
            raise NotStatic(f"{module}:{qualname}: no __init__ of its own")
        fn, drop_first = init, True
    else:
        if node.decorator_list:
            raise NotStatic(f"{module}:{qualname}: decorated")
        fn, drop_first = node, False
    a = fn.args
    P = inspect.Parameter
    positional = [*a.posonlyargs, *a.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    params: list[tuple[ast.arg, Any, ast.expr | None]] = [
        (arg, P.POSITIONAL_ONLY if i < len(a.posonlyargs) else P.POSITIONAL_OR_KEYWORD, d)
        for i, (arg, d) in enumerate(zip(positional, defaults, strict=True))]
    if a.vararg:
        params.append((a.vararg, P.VAR_POSITIONAL, None))
    params += [(arg, P.KEYWORD_ONLY, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]
    if a.kwarg:
        raise NotStatic(f"{module}:{qualname}: **{a.kwarg.arg} (its keys are decided at run time)")
    if drop_first:
        if not params or params[0][1] not in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
            raise NotStatic(f"{module}:{qualname}: __init__ without self")
        params = params[1:]
    return inspect.Signature(
        [P(arg.arg, kind, default=P.empty if d is None else _value(module, d),
           annotation=P.empty if arg.annotation is None else ast.unparse(arg.annotation))
         for arg, kind, d in params],
        return_annotation=inspect.Signature.empty if fn.returns is None else ast.unparse(fn.returns))


def resolved_hints(signature: inspect.Signature) -> dict[str, Any]:
    """The parameter annotations of ``signature`` that resolve against builtins, ``typing``,
    ``collections.abc`` and ``Path``."""
    hints: dict[str, Any] = {}
    for p in signature.parameters.values():
        if not isinstance(p.annotation, str):
            if p.annotation is not inspect.Parameter.empty:
                hints[p.name] = p.annotation
            continue
        try:
            hints[p.name] = eval(p.annotation, dict(_NAMESPACE))  # noqa: S307 - an annotation of our own plugins
        except Exception:  # a name from the module itself (Field): not checked before the run
            continue
    return hints


def declared_classes(module: str, decorator: str) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """``(class name, args, kwargs)`` of every top-level class of ``module`` decorated with
    ``@decorator(...)``, read from the source; `NotStatic` when an argument is not a literal or a constant."""
    tree, _ = _parsed(module)
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for dec in node.decorator_list:
            func = dec.func if isinstance(dec, ast.Call) else dec
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name != decorator:
                continue
            if not isinstance(dec, ast.Call) or any(isinstance(a, ast.Starred) for a in dec.args) \
                    or any(k.arg is None for k in dec.keywords):
                raise NotStatic(f"{module}:{node.name}: @{decorator} without plain arguments")
            found.append((node.name, tuple(_value(module, a) for a in dec.args),
                          {k.arg: _value(module, k.value) for k in dec.keywords if k.arg is not None}))
    return found


class LazyFactory:
    """A factory for ``module:qualname`` that imports ``module`` when first called (see the module docstring).

    ``inspect.signature`` and ``typing.get_type_hints`` work on it without importing; ``load()`` returns the
    object itself."""

    def __init__(self, target: str) -> None:
        module, sep, qualname = target.partition(":")
        if not sep or not module or not qualname:
            raise PluginError(f"a lazy factory is named 'package.module:Name', got {target!r}")
        self.target = target
        self.module, self.qualname = module, qualname
        self.__name__ = qualname.rpartition(".")[2]
        self.__qualname__ = qualname
        self._object: Any = None
        self._signature: inspect.Signature | None = None
        self._hints: dict[str, Any] | None = None

    def load(self) -> Callable[..., Any]:
        """Import the module and return the class or function."""
        if self._object is None:
            obj: Any = importlib.import_module(self.module)
            for part in self.qualname.split("."):
                obj = getattr(obj, part)
            self._object = obj
        return self._object

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:  # read by inspect.signature
        if self._signature is None:
            try:
                self._signature = static_signature(self.module, self.qualname)
            except NotStatic:
                self._signature = inspect.signature(self.load())
        return self._signature

    @property
    def __annotations__(self) -> dict[str, Any]:  # read by typing.get_type_hints (config type checks)
        if self._hints is None:
            signature = self.__signature__
            if self._object is None:
                self._hints = resolved_hints(signature)
            else:
                obj = self._object
                try:
                    self._hints = dict(typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj))
                except Exception:
                    self._hints = {}
                self._hints.pop("return", None)
        return self._hints

    @property
    def loaded(self) -> bool:
        """Whether the module has been imported through this factory."""
        return self._object is not None

    def __reduce__(self) -> tuple[Any, ...]:
        return (LazyFactory, (self.target,))

    def __repr__(self) -> str:
        return f"lazy({self.target!r})"


def lazy(target: str) -> LazyFactory:
    """A factory for ``"package.module:Name"`` that imports ``package.module`` only when called."""
    return LazyFactory(target)


def lazy_method(target: str, config: type) -> Callable[..., Any]:
    """A method factory for ``"package.module:factory"`` whose signature is ``config``'s (a torch-free dataclass
    in the plugin's config module), importing ``package.module`` (torch, transformers) only when called.

    Methods take their keys from a config dataclass rather than a literal signature, so `lazy` would have to
    import the method module to read it; the config module is already imported by the plugin and says the keys
    plainly, which is all `ctrbench list` and `ctrbench validate` need. Assign it to a global named like the
    factory (``p5 = lazy_method("pkg.p5:p5", P5Config)``): it pickles by reference to that global."""
    module, _, name = target.partition(":")
    if not module or not name:
        raise PluginError(f"lazy_method target must be 'package.module:factory', got {target!r}")

    def factory(**kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(**kwargs)

    factory.__signature__ = inspect.signature(config)  # type: ignore[attr-defined]
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"`{module}.{name}`, imported when first called; its keys are `{config.__name__}`'s."
    # Pickled by reference as the registering module's global of that name (how namedtuple finds its module).
    factory.__module__ = sys._getframe(1).f_globals.get("__name__", module)
    return factory


__all__ = ["LazyFactory", "NotStatic", "declared_classes", "lazy", "lazy_method", "resolved_hints",
           "static_signature"]
