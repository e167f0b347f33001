"""`ctrbench --help`, `validate`, `list` and `run --dry-run` do not import torch, transformers or scipy (nor pandas;
`--help` not even numpy): checked by which modules are loaded in a fresh interpreter, not by timing (the times are
in benchmarks/test_cli_startup.py). What makes that possible is checked too: the plugins register lazy factories
(`ctrbench.lazy`) whose signatures, type hints and metadata, read from the source, are the implementations'."""

from __future__ import annotations

import functools
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ctrbench.configtypes import _hints
from ctrbench.errors import PluginError
from ctrbench.kinds import KINDS
from ctrbench.lazy import LazyFactory, lazy
from ctrbench.plugins import load_plugins

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "scipy", "pandas")


def _loaded_after(argv: list[str], tmp_path: Path) -> list[str]:
    """The modules of interest a fresh interpreter has loaded after ``ctrbench ARGV`` (which must succeed)."""
    code = textwrap.dedent(f"""
        import sys
        import ctrbench.cli as c
        try:
            rc = c.main({argv!r})
        except SystemExit as exc:  # --help
            rc = exc.code
        assert rc == 0, rc
        loaded = [m for m in sys.modules if m.split(".")[0] in {HEAVY + ("numpy", "yaml", "rich")!r}]
        print("LOADED:", *loaded, file=sys.stderr)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if line.startswith("LOADED:")][-1].split()[1:]


def test_help_imports_no_numpy_yaml_or_rich(tmp_path):
    assert _loaded_after(["--help"], tmp_path) == []


@pytest.mark.parametrize("argv", [
    pytest.param(["validate", "suites/compat.yaml"], id="validate"),
    pytest.param(["list"], id="list"),
    pytest.param(["run", "suites/compat.yaml", "--dry-run"], id="dry-run"),
])
def test_command_imports_no_torch_transformers_or_scipy(argv, tmp_path):
    loaded = _loaded_after([*argv, *(["--store", str(tmp_path / "runs")] if "suites/compat.yaml" in argv else [])],
                           tmp_path)
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


# -- the lazy factories ---------------------------------------------------------------------------------------

PLUGINS = load_plugins()


def _lazy_entries() -> list:
    """Every registered component whose factory is (a ``typed`` wrapper or ``partial`` of) a `LazyFactory`."""
    out = []
    for kind in KINDS:
        for entry in PLUGINS.registry(kind.name).find("*"):
            target = inspect.unwrap(entry.factory)
            while isinstance(target, functools.partial):
                target = target.func
            if isinstance(target, LazyFactory):
                out.append(pytest.param(kind, entry, target, id=f"{kind.name}-{entry.name}"))
    return out


LAZY = _lazy_entries()


def test_the_heavy_builtins_are_registered_lazily():
    names = {(p.values[0].name, p.values[1].name) for p in LAZY}
    assert {("ctr", "dnn"), ("ctr", "dcnv2"), ("datasets", "movielens-100k"), ("datasets", "amazon-toys")} <= names


@pytest.mark.parametrize(("kind", "entry", "factory"), LAZY)
def test_a_lazy_factory_has_its_implementations_signature_and_hints(kind, entry, factory):
    fresh = lazy(factory.target)  # nothing imported through it yet: everything below is read from the source
    static_sig, static_hints = inspect.signature(fresh), _hints(fresh)
    assert not fresh.loaded
    real = fresh.load()
    assert str(static_sig) == str(inspect.signature(real))
    real_hints = _hints(real)
    for name in static_sig.parameters:
        if name not in kind.reserved:
            assert static_hints.get(name) == real_hints.get(name), name


def test_ctr_backbones_are_registered_with_their_decorators_metadata():
    import ctrbench_ctr.plugin as ctr_plugin
    from ctrbench.models.base import backbone_info

    declared = {meta["name"]: meta for meta, _ in ctr_plugin.declared()}
    for cls in ctr_plugin.discover():
        info = backbone_info(cls)
        assert declared[info.name] == {"name": info.name, "summary": info.summary, "paper": info.paper, "q": info.q}
        assert PLUGINS.registry("ctr").get(info.name).factory.load() is cls
    assert len(declared) == len(ctr_plugin.discover())


@pytest.mark.parametrize(("plugin_module", "method_module", "name"), [
    ("ctrbench_clickprompt.plugin", "ctrbench_clickprompt.method", "clickprompt"),
    ("ctrbench_sllm4ctr.plugin", "ctrbench_sllm4ctr.method", "sllm4ctr"),
    ("ctrbench_sllm4ctr.plugin", "ctrbench_sllm4ctr.method", "tallrec"),
    ("ctrbench_cela.plugin", "ctrbench_cela.method", "cela"),
    ("ctrbench_unisrec.plugin", "ctrbench_unisrec.method", "unisrec"),
    ("ctrbench_flip.plugin", "ctrbench_flip.method", "flip"),
])
def test_a_methods_registered_factory_has_the_methods_signature_and_hints(plugin_module, method_module, name):
    import importlib

    registered = getattr(importlib.import_module(plugin_module), name)
    real = getattr(importlib.import_module(method_module), name)
    assert PLUGINS.registry("methods").get(name).factory is registered
    assert inspect.signature(registered) == inspect.signature(real)
    params = inspect.signature(real).parameters
    assert {k: v for k, v in _hints(registered).items() if k in params} == \
        {k: v for k, v in _hints(real).items() if k in params}


def test_a_source_that_does_not_say_its_signature_plainly_is_imported(tmp_path, monkeypatch):
    (tmp_path / "lazy_probe.py").write_text(textwrap.dedent('''
        import inspect
        LIMIT = 3
        A, B = "a", "b"

        class Plain:
            def __init__(self, n: int = LIMIT, mode: str = B, *, ratio: float = 0.5) -> None:
                pass

        def computed(size: int = LIMIT * 2):
            pass

        def keywords(**config):
            pass

        keywords.__signature__ = inspect.signature(Plain)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    plain = lazy("lazy_probe:Plain")
    assert str(inspect.signature(plain)) == "(n: 'int' = 3, mode: 'str' = 'b', *, ratio: 'float' = 0.5) -> 'None'"
    assert _hints(plain) == {"n": int, "mode": str, "ratio": float} and not plain.loaded
    computed = lazy("lazy_probe:computed")
    assert str(inspect.signature(computed)) == "(size: int = 6)" and computed.loaded
    keywords = lazy("lazy_probe:keywords")
    assert list(inspect.signature(keywords).parameters) == ["n", "mode", "ratio"] and keywords.loaded
    sys.modules.pop("lazy_probe", None)


def test_lazy_method_has_the_configs_signature_imports_on_call_and_pickles_by_reference(tmp_path, monkeypatch):
    import pickle
    import sys
    from dataclasses import dataclass

    from ctrbench.lazy import lazy_method

    (tmp_path / "lazy_method_probe.py").write_text("def make(**kw):\n    return ('made', kw)\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    @dataclass
    class Config:
        size: int = 3
        name: str = "x"

    factory = lazy_method("lazy_method_probe:make", Config)
    assert list(inspect.signature(factory).parameters) == ["size", "name"]
    assert "lazy_method_probe" not in sys.modules  # nothing imported until called
    assert factory(size=5) == ("made", {"size": 5})
    assert factory.__module__ == __name__ and factory.__name__ == "make"
    globals()["make"] = factory  # a plugin assigns it to a global of that name
    try:
        assert pickle.loads(pickle.dumps(factory)) is factory
    finally:
        del globals()["make"]
    with pytest.raises(PluginError, match="package.module:factory"):
        lazy_method("no_colon", Config)
