"""Component configs are typed at `validate`: every bad value, unknown key and missing required key of a dataset,
CTR backbone, PLM, method or executor is named in one line before anything runs."""

from __future__ import annotations

import textwrap
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

from ctrbench import hookimpl
from ctrbench.configtypes import config_type_problems, missing_config_keys
from ctrbench.errors import PluginError, SuiteError
from ctrbench.plugins import load_plugins
from ctrbench.registry import check_config
from ctrbench.runner import plan
from ctrbench.suite import load_suite

SUITE = """
schema_version: 1
name: t
analysis: compat
datasets: [synthetic]
seeds: [1]
defaults:
  method: ctr
  ctr: {name: dnn}
  train: {epochs: 1, batch_size: 64}
"""


def _plan(tmp_path: Path, overrides: list[str], extra: list[tuple[str, object]] | None = None) -> list:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE))
    return plan(load_suite(path, overrides), load_plugins(extra=extra))


def _error(tmp_path: Path, overrides: list[str], extra: list[tuple[str, object]] | None = None) -> str:
    with pytest.raises(SuiteError) as info:
        _plan(tmp_path, overrides, extra)
    message = str(info.value)
    assert "\n" not in message
    return message.removeprefix(f"{tmp_path / 'suite.yaml'}: ")


def test_a_string_embed_dim_is_named_with_its_expected_type(tmp_path):
    assert _error(tmp_path, ['ctr={name: dnn, embed_dim: "8"}']) == \
        "ctr: ctr 'dnn': embed_dim must be an integer, got str '8'"


def test_every_bad_key_is_reported_in_one_line(tmp_path):
    message = _error(tmp_path, ['ctr={name: dnn, embed_dim: "8", dropout: high, batch_norm: "no", hiden_units: [8]}'])
    assert message == ("ctr: ctr 'dnn': unknown config key 'hiden_units' (did you mean 'hidden_units'?); allowed: "
                       "activation, batch_norm, dropout, embed_dim, hidden_units; embed_dim must be an integer, got "
                       "str '8'; dropout must be a number, got str 'high'; batch_norm must be true or false, got str "
                       "'no'")


def test_problems_of_several_components_are_all_reported(tmp_path):
    message = _error(tmp_path, ["dataset={name: synthetic, num_samples: many}", 'ctr={name: dnn, embed_dim: "8"}',
                                "executor={name: local, threads: two}"])
    assert message == ("dataset: datasets 'synthetic': num_samples must be an integer, got str 'many' | "
                       "ctr: ctr 'dnn': embed_dim must be an integer, got str '8' | "
                       "executor: executor 'local': threads must be an integer or null, got str 'two'")


def test_method_and_plm_values_are_typed(tmp_path):
    message = _error(tmp_path, ["method={name: clickprompt, use_prompt: 'no', num_prompts: 2.5}",
                                "plm={name: random-bert, seed: -1}"])
    assert message == ("method: methods 'clickprompt': use_prompt must be true or false, got str 'no'; "
                       "num_prompts must be an integer, got float 2.5 | "
                       "plm: plm 'random-bert': seed must be in 0 .. 2**32 - 1 (numpy's seed range), got -1")


def test_good_values_pass(tmp_path):
    specs = _plan(tmp_path, ["ctr={name: dnn, embed_dim: 8, dropout: 0, hidden_units: [8, 4], batch_norm: true}",
                             "dataset={name: synthetic, num_samples: 500.0}"])
    assert specs and all(s.ctr.name == "dnn" for s in specs)
    assert all(s.ctr.config == {"embed_dim": 8, "dropout": 0, "hidden_units": [8, 4], "batch_norm": True}
               for s in specs)


def _third_party(**factories: object) -> types.ModuleType:
    mod = types.ModuleType("third")

    def register_methods(register):
        for name, factory in factories.items():
            register(name, factory)

    mod.ctrbench_register_methods = hookimpl(register_methods)
    return mod


def test_missing_required_keys_are_reported(tmp_path):
    def needs(*, path: str, column: str, scale: float = 1.0) -> None:
        return None

    extra = [("third", _third_party(needs=needs))]
    assert _error(tmp_path, ["method={name: needs, scale: big}"], extra) == \
        "method: methods 'needs': scale must be a number, got str 'big'; missing required config keys 'path', 'column'"
    assert _error(tmp_path, ["method={name: needs, path: a.csv}"], extra) == \
        "method: methods 'needs': missing required config key 'column'"
    _plan(tmp_path, ["method={name: needs, path: a.csv, column: c}"], extra)


def test_reserved_backbone_arguments_are_not_required():
    def backbone(fields, *, embed_dim: int = 16, num_extra_fields: int = 0) -> None:
        return None

    assert missing_config_keys(backbone, {}, ("fields", "num_extra_fields")) == []
    assert missing_config_keys(backbone, {}) == ["fields"]
    with pytest.raises(PluginError, match=r"^ctr 'b': embed_dim must be an integer, got bool True$"):
        check_config(backbone, {"embed_dim": True}, "ctr 'b'", ("fields", "num_extra_fields"))


def test_type_problems_cover_unions_sequences_and_untyped_factories():
    def f(*, units: Sequence[int] = (1,), mode: int | str = "auto", x=None) -> None:
        return None

    assert config_type_problems(f, {"units": [1, 2], "mode": 3, "x": object()}) == []
    assert config_type_problems(f, {"units": "12", "mode": 1.5}) == [
        "units must be a list of integers, got str '12'", "mode must be an integer or a string, got float 1.5"]
    assert config_type_problems(lambda **kw: None, {"anything": "goes"}) == []


def test_unknown_name_of_an_installed_but_unregistered_plugin_says_how_to_register(tmp_path, monkeypatch):
    class Dist:
        def __init__(self, name: str, pyproject: str) -> None:
            self.metadata = {"Name": name}
            self.requires = ["ctrbench>=0.1", "torch"]
            self.entry_points = []
            self.folder = tmp_path / name
            self.folder.mkdir()
            (self.folder / "pyproject.toml").write_text(pyproject)

        def read_text(self, filename: str) -> str | None:
            return f'{{"url": "file://{self.folder}", "dir_info": {{"editable": true}}}}' \
                if filename == "direct_url.json" else None

    stale = Dist("ctrbench-fancy", '[project]\nname = "ctrbench-fancy"\n\n[project.entry-points.ctrbench]\n'
                                  'fancy = "ctrbench_fancy.plugin"\n')
    never = Dist("ctrbench-other", '[project]\nname = "ctrbench-other"\n')
    import ctrbench.plugins as plugins_mod

    real = plugins_mod._distributions
    monkeypatch.setattr(plugins_mod, "_distributions", lambda: [*real(), never, stale])
    message = _error(tmp_path, ["ctr=fancy"])
    assert message.startswith("ctr: unknown ctr 'fancy'")
    assert message.endswith(
        f" [distribution 'ctrbench-fancy' is installed without the ctrbench entry point its "
        f"{stale.folder / 'pyproject.toml'} declares: entry points are read at install time, reinstall it "
        "(pip install -e <its folder>); distribution 'ctrbench-other' requires ctrbench but declares no ctrbench "
        "entry point: add `[project.entry-points.ctrbench]` with `<plugin name> = \"<module with the hooks>\"` to "
        "its pyproject.toml and reinstall it]")
