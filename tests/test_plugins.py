"""Plugin manager and registries: loading, failures by name, disabling, duplicates, did-you-mean."""

from __future__ import annotations

import types

import pytest

from ctrbench import hookimpl, hookspecs
from ctrbench.errors import PluginError
from ctrbench.plugins import load_plugins
from ctrbench.registry import Registry, check_config_keys


def _module(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, hook, hookimpl(fn))
    return mod


def test_builtin_plugins_register_every_kind():
    plugins = load_plugins()
    assert {"lr", "fm", "dnn", "dcnv2"} <= set(plugins.registry("ctr"))
    assert {"movielens-100k", "synthetic"} <= set(plugins.registry("datasets"))
    assert "ctr" in plugins.registry("methods")
    assert "local" in plugins.registry("executors")
    assert all(i.status == "loaded" for i in plugins.infos if i.distribution == "ctrbench")
    assert plugins.registry("ctr").get("dcnv2").plugin == "builtin-ctr"


def test_every_registration_hook_reaches_its_registry():
    def reg(kind):
        return lambda register: register(f"x-{kind}", lambda: None, summary=kind)

    mod = _module("everything",
                  ctrbench_register_datasets=reg("datasets"),
                  ctrbench_register_ctr_backbones=reg("ctr"),
                  ctrbench_register_plms=reg("plm"),
                  ctrbench_register_methods=reg("methods"),
                  ctrbench_register_executors=reg("executors"))
    plugins = load_plugins(extra=[("everything", mod)])
    for kind in ("datasets", "ctr", "plm", "methods", "executors"):
        entry = plugins.registry(kind).get(f"x-{kind}")
        assert entry.plugin == "everything" and entry.summary == kind


def test_run_finished_hook_is_called_and_a_raising_tracker_is_contained():
    seen = []
    good = _module("tracker", ctrbench_run_finished=lambda spec, result: seen.append((spec, result)))
    bad = _module("broken-tracker", ctrbench_run_finished=lambda spec, result: 1 / 0)
    plugins = load_plugins(extra=[("tracker", good), ("broken-tracker", bad)])
    plugins.notify_run_finished("SPEC", "RESULT")  # must not raise
    assert seen == [("SPEC", "RESULT")]


def test_duplicate_name_error_names_both_plugins():
    a = _module("plugin-a", ctrbench_register_ctr_backbones=lambda register: register("dup", object))
    b = _module("plugin-b", ctrbench_register_ctr_backbones=lambda register: register("dup", object))
    with pytest.raises(PluginError, match="ctr 'dup' is registered twice: by plugin 'plugin-[ab]' and by plugin "
                                          "'plugin-[ab]'"):
        load_plugins(extra=[("plugin-a", a), ("plugin-b", b)])


def test_duplicate_of_a_builtin_name_is_an_error():
    clash = _module("clash", ctrbench_register_ctr_backbones=lambda register: register("dnn", object))
    with pytest.raises(PluginError, match="'dnn' is registered twice: by plugin 'builtin-ctr' and by plugin 'clash'"):
        load_plugins(extra=[("clash", clash)])


def test_unknown_name_suggests_close_matches():
    plugins = load_plugins()
    with pytest.raises(PluginError, match=r"unknown ctr 'dcnv3' \(did you mean 'dcnv2'"):
        plugins.registry("ctr").get("dcnv3")


def test_unknown_hook_is_rejected_by_check_pending():
    mod = _module("typo", ctrbench_register_modles=lambda register: None)
    with pytest.raises(PluginError, match="typo"):
        load_plugins(extra=[("typo", mod)])


def test_disable_env_skips_plugins(monkeypatch):
    monkeypatch.setenv("CTRBENCH_DISABLE_PLUGINS", "builtin-ctr, other")
    plugins = load_plugins()
    assert "dnn" not in plugins.registry("ctr")
    status = {i.name: i.status for i in plugins.infos}
    assert status["builtin-ctr"] == "disabled"
    assert status["builtin-datasets"] == "loaded"


def test_plugin_that_raises_on_import_is_reported_and_others_load(monkeypatch):
    import importlib.metadata as md

    real = md.entry_points

    class FakeDist:
        name, version = "broken-dist", "9.9"

    class BrokenEP:
        name, value, group, dist = "broken", "broken_mod.plugin", "ctrbench", FakeDist()

        def load(self):
            raise ImportError("No module named 'torch_geometric'")

    def fake_entry_points(group=None, **kw):
        eps = list(real(group=group, **kw)) if group else real(**kw)
        return [*eps, BrokenEP()] if group == hookspecs.PROJECT else eps

    monkeypatch.setattr(md, "entry_points", fake_entry_points)
    plugins = load_plugins()
    [failed] = plugins.failed
    assert failed.name == "broken" and failed.status == "failed"
    assert failed.error == "ImportError: No module named 'torch_geometric'"
    assert "dnn" in plugins.registry("ctr")  # the others still load
    assert "broken: ImportError" in plugins.failure_hint()


def test_registry_glob_and_config_key_check():
    reg: Registry[object] = Registry("ctr")

    def factory(fields, *, embed_dim=16, hidden_units=(1,)):
        return None

    reg.add("dcn", factory, plugin="p")
    reg.add("dcnv2", factory, plugin="p")
    reg.add("dnn", factory, plugin="p")
    assert [e.name for e in reg.find("*dcn*")] == ["dcn", "dcnv2"]
    with pytest.raises(PluginError, match=r"unknown config key 'hiden_units' \(did you mean 'hidden_units'"):
        check_config_keys(factory, {"hiden_units": (2,)}, "ctr 'dnn'", reserved=("fields",))
    with pytest.raises(PluginError, match="empty or non-string name"):
        reg.add("", factory, plugin="p")


def test_hookspecs_are_all_documented_in_plugins_guide():
    """datasette's meta-test: every hook has a section in docs/plugins.md."""
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text()
    hooks = [n for n in dir(hookspecs) if n.startswith("ctrbench_")]
    assert len(hooks) == 6
    missing = [h for h in hooks if f"`{h}" not in doc]
    assert not missing, f"hooks without a section in docs/plugins.md: {missing}"

