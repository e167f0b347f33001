"""Docs generated from the code match it; every hook has a kind, a protocol, a check, a test and a page, and every
component is on its page (datasette's meta-tests)."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

import ctrbench.testing
from ctrbench import docgen, hookspecs
from ctrbench.kinds import KINDS
from ctrbench.plugins import load_plugins
from ctrbench.protocols import protocol_members
from ctrbench.registry import Entry

ROOT = Path(__file__).parent.parent
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def builtin():
    return docgen.builtin(load_plugins())


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_generated_page_is_up_to_date(kind, builtin):
    page = ROOT / kind.page
    assert page.is_file(), f"{kind.page} is missing: run `python -m ctrbench.docgen --write`"
    assert page.read_text(encoding="utf-8") == docgen.render(kind, builtin), (
        f"{kind.page} is stale: run `python -m ctrbench.docgen --write` (or "
        f"`python -m ctrbench.docgen {docgen.PAGES[kind.name][0]} > {kind.page}`)")


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_registered_component_is_on_its_page(kind, builtin):
    page = (ROOT / kind.page).read_text(encoding="utf-8")
    missing = [e.name for e in builtin.registry(kind.name).find("*") if f"| `{e.name}` |" not in page]
    assert not missing, f"{kind.page} does not list {missing}"
    assert len(builtin.registry(kind.name)) > 0, f"ctrbench registers no {kind.label}"


def test_every_hook_has_a_kind_a_protocol_a_check_a_test_and_a_page():
    specs = {name for name, fn in vars(hookspecs).items()
             if name.startswith("ctrbench_") and callable(fn) and hasattr(fn, "ctrbench_spec")}
    by_hook = {k.hook: k for k in KINDS}
    assert len(by_hook) == len(KINDS), "two kinds share a hook"
    registration = {s for s in specs if s.startswith("ctrbench_register_")}
    assert registration == set(by_hook), (f"registration hooks without a kind: {registration - set(by_hook)}; "
                                          f"kinds without a hook: {set(by_hook) - registration}")
    checked = _conformance_cases()
    registered = load_plugins()
    for kind in KINDS:
        assert protocol_members(kind.protocol), f"{kind.name}: protocol {kind.protocol.__name__} declares nothing"
        check = getattr(ctrbench.testing, kind.check, None)
        assert callable(check) and kind.check in ctrbench.testing.__all__, f"ctrbench.testing has no {kind.check}"
        assert kind.name in docgen.PAGES, f"ctrbench.docgen renders no page for kind {kind.name}"
        unchecked = [n for n in registered.registry(kind.name) if (kind.name, n, kind.check) not in checked]
        assert not unchecked, f"tests/test_conformance.py runs {kind.check} on no case of {kind.name} {unchecked}"
    others = specs - registration  # event hooks: each named by some test
    tests = "".join(p.read_text(encoding="utf-8") for p in TESTS.glob("test_*.py"))
    untested = [h for h in others if h not in tests]
    assert not untested, f"hooks no test mentions: {untested}"


def _conformance_cases() -> set[tuple[str, str, str]]:
    """(kind, name, check) for every registry entry a test of tests/test_conformance.py is parametrised over, with
    each ``check_*`` function of ``ctrbench.testing`` that test calls."""
    spec = importlib.util.spec_from_file_location("conformance_under_test", TESTS / "test_conformance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = set()
    for name, fn in vars(module).items():
        if not name.startswith("test_") or not callable(fn):
            continue
        source = inspect.getsource(fn)
        checks = [c for c in ctrbench.testing.__all__ if c.startswith("check_") and f"{c}(" in source]
        for mark in getattr(fn, "pytestmark", []):
            if mark.name != "parametrize":
                continue
            for case in mark.args[1]:
                values = case.values if hasattr(case, "values") else (case,)
                for value in values:
                    if isinstance(value, Entry):
                        cases.update((value.kind, value.name, c) for c in checks)
    return cases


def test_every_hook_is_documented_in_hookspecs():
    for name, fn in vars(hookspecs).items():
        if name.startswith("ctrbench_") and hasattr(fn, "ctrbench_spec"):
            assert inspect.getdoc(fn), f"hookspec {name} has no docstring"


def test_every_builtin_model_has_paper_and_q(builtin):
    page = docgen.models_markdown(builtin)
    for entry in builtin.registry("ctr").find("*"):
        assert entry.paper and entry.metadata.get("q"), entry.name
        assert f"| `{entry.name}` |" in page
