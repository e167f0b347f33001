"""Plugin manager and registries: loading, failures by name, disabling, duplicates, did-you-mean."""

from __future__ import annotations

import types

import pytest

from ctrbench import hookimpl, hookspecs
from ctrbench.errors import PluginError, SuiteError
from ctrbench.plan import plan
from ctrbench.plugins import load_plugins
from ctrbench.registry import Registry, check_config_keys
from ctrbench.suite import load_suite


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
    from ctrbench.kinds import KINDS

    def reg(kind):
        return lambda register: register(f"x-{kind}", lambda: None, summary=kind)

    mod = _module("everything", **{kind.hook: reg(kind.name) for kind in KINDS})
    plugins = load_plugins(extra=[("everything", mod)])
    for kind in KINDS:
        entry = plugins.registry(kind.name).get(f"x-{kind.name}")
        assert entry.plugin == "everything" and entry.summary == kind.name


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
    plugins = load_plugins(extra=[("plugin-a", a), ("plugin-b", b)])  # loading does not fail
    message = ("ctr 'dup' is registered twice: by plugin 'plugin-a' and by plugin 'plugin-b'; rename or uninstall "
               "one, or disable its plugin with CTRBENCH_DISABLE_PLUGINS=<plugin name>")
    assert plugins.duplicates == [message]
    with pytest.raises(PluginError) as info:
        plugins.registry("ctr").get("dup")
    assert str(info.value) == message
    assert [e.plugin for e in plugins.registry("ctr").find("dup")] == ["plugin-a", "plugin-b"]


def test_duplicate_of_a_builtin_name_is_an_error_only_where_it_is_used(caplog):
    clash = _module("clash", ctrbench_register_ctr_backbones=lambda register: register("dnn", object))
    plugins = load_plugins(extra=[("clash", clash)])
    assert "ctr 'dnn' is registered twice: by plugin 'builtin-ctr' and by plugin 'clash'" in caplog.text
    with pytest.raises(PluginError, match="^ctr 'dnn' is registered twice: by plugin 'builtin-ctr' and by plugin "
                                          "'clash'; "):
        plugins.registry("ctr").get("dnn")
    assert plugins.registry("ctr").get("fm").plugin == "builtin-ctr"  # every other name still works


def test_list_and_plugins_commands_survive_a_duplicate_third_party_name(monkeypatch, capsys):
    import ctrbench.cli as cli

    clash = _module("clash", ctrbench_register_ctr_backbones=lambda register: register("dnn", object,
                                                                                        summary="a clashing dnn"))
    monkeypatch.setattr(cli, "load_plugins", lambda: load_plugins(extra=[("clash", clash)]))
    assert cli.main(["list", "ctr", "dnn"]) == 0
    out = capsys.readouterr().out
    assert "builtin-ctr" in out and "clash" in out and "a clashing dnn" in out
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "clash" in out and "builtin-ctr" in out


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


def test_plugin_that_raises_on_import_is_reported_and_others_load(monkeypatch, tmp_path):
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
    suite = tmp_path / "suite.yaml"  # two unknown names: both reported, the failed plugin named once
    suite.write_text("schema_version: 1\nname: t\ndatasets: [synthetic]\nseeds: [1]\n"
                     "defaults: {method: ctr}\ngrid: {ctr: [gnn, gat]}\nbaseline: {ctr: gnn}\n")
    with pytest.raises(SuiteError) as err:
        plan(load_suite(suite), plugins)
    message = str(err.value)
    assert "unknown ctr 'gnn'" in message and "unknown ctr 'gat'" in message and "\n" not in message
    assert message.count("broken: ImportError") == 1 and message.endswith("'torch_geometric']")


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



def test_every_unknown_config_key_is_named():
    def factory(fields, *, embed_dim=16, hidden_units=(1,)):
        return None

    with pytest.raises(PluginError) as info:
        check_config_keys(factory, {"hiden_units": (2,), "embed_dims": 4}, "ctr 'dnn'", reserved=("fields",))
    assert str(info.value) == ("ctr 'dnn': unknown config key 'hiden_units' (did you mean 'hidden_units'?); unknown "
                               "config key 'embed_dims' (did you mean 'embed_dim'?); allowed: embed_dim, hidden_units")


def test_conformance_kit_explains_embed_dim_in_config():
    from ctrbench.testing import check_ctr_backbone
    from ctrbench_ctr.dnn import DNN

    with pytest.raises(TypeError) as info:
        check_ctr_backbone(DNN, config={"embed_dim": 4})
    assert str(info.value) == ("check_ctr_backbone: config sets 'embed_dim' (4), which the kit passes to the factory "
                               "itself; use check_ctr_backbone(..., embed_dim=4) instead")
    with pytest.raises(TypeError, match="config sets 'num_extra_fields'"):
        check_ctr_backbone(DNN, config={"num_extra_fields": 1})


def test_paper_citations_are_real_references():
    """`ctrbench list` cites papers, not files outside a clone; the Llama PLMs cite the Llama papers."""
    import re
    from pathlib import Path

    from ctrbench.registry import KINDS

    plugins = load_plugins()
    root = Path(__file__).parent.parent
    for kind in KINDS:
        for entry in plugins.registry(kind).find():
            for path in re.findall(r"[\w./-]+\.(?:md|txt|pdf)\b", entry.paper):
                inside = not path.startswith("..") and (root / path).is_file()
                assert inside, f"{kind} '{entry.name}' cites {path}, which a clone does not have"
    plm = plugins.registry("plm")
    assert plm.get("llama-2-7b").paper.startswith("Touvron et al., Llama 2:")
    assert plm.get("llama-3-8b").paper.startswith("Llama Team, AI @ Meta, The Llama 3 Herd of Models")
    assert "Lin et al., ClickPrompt" in plugins.registry("methods").get("clickprompt").paper
