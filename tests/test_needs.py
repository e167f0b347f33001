"""What a method declares it needs (``needs=MethodNeeds(...)``) is checked against every run at validation, from
the registrations alone: PLM family, CTR backbone, user history, item texts; undeclared datasets at run time."""

from __future__ import annotations

import textwrap
import types
from dataclasses import replace

import pytest

import ctrbench.cli as cli
from ctrbench import hookimpl
from ctrbench.errors import PluginError, RunError, SuiteError
from ctrbench.needs import check_data_needs
from ctrbench.plugins import load_plugins
from ctrbench.protocols import MethodNeeds
from ctrbench.runner import plan
from ctrbench.suite import load_suite

SUITE = """\
schema_version: 1
name: needs
datasets: [{name: synthetic, num_samples: 300, num_fields: 3}]
defaults:
  method: %s
"""


def _plan(tmp_path, method: str, *lines: str, plugins=None):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SUITE % method) + "".join(f"  {line}\n" for line in lines))
    return plan(load_suite(path), plugins or load_plugins())


def _with_method(**needs):
    """The built-in plugins plus a method `reader` declaring ``needs``, and a dataset `plain` declaring nothing."""
    def register_methods(register):
        register("reader", lambda: None, summary="reads what it declares", needs=needs)

    def register_datasets(register):
        register("plain", lambda: None, summary="declares nothing")

    mod = types.ModuleType("needy")
    mod.ctrbench_register_methods = hookimpl(register_methods)
    mod.ctrbench_register_datasets = hookimpl(register_datasets)
    return load_plugins(extra=[("needy", mod)])


def test_tallrec_on_a_masked_lm_is_an_exit_2_error_at_validate(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(textwrap.dedent(SUITE % "tallrec") + "  plm: bert-tiny\n")
    assert cli.main(["validate", "s.yaml"]) == 2
    err = capsys.readouterr().err
    assert "s.yaml: method: method 'tallrec' needs a PLM of family causal_lm or seq2seq_lm; plm 'bert-tiny' is a " \
           "masked_lm" in err
    (tmp_path / "s.yaml").write_text(textwrap.dedent(SUITE % "tallrec") + "  plm: random-llama\n")
    assert cli.main(["validate", "s.yaml"]) == 0


def test_a_missing_plm_or_ctr_backbone_is_named(tmp_path):
    with pytest.raises(SuiteError, match=r"method 'sllm4ctr' needs a PLM of family causal_lm or seq2seq_lm "
                                         r"\(plm:\), and the run sets none"):
        _plan(tmp_path, "sllm4ctr")
    with pytest.raises(SuiteError, match=r"method 'ctr' needs a CTR backbone \(ctr:\), and the run sets none"):
        _plan(tmp_path, "ctr")
    with pytest.raises(SuiteError) as info:  # every problem in one line
        _plan(tmp_path, "clickprompt", "plm: random-llama")
    assert "needs a PLM of family masked_lm; plm 'random-llama' is a causal_lm" in str(info.value)
    assert "method 'clickprompt' needs a CTR backbone" in str(info.value)
    assert len(_plan(tmp_path, "clickprompt", "plm: random-bert", "ctr: lr")) == 1


def test_history_and_item_text_needs_against_what_datasets_declare(tmp_path):
    plugins = _with_method(history=True)
    assert len(_plan(tmp_path, "reader", plugins=plugins)) == 1  # synthetic has a history by default
    with pytest.raises(SuiteError, match=r"method 'reader' needs a user history; dataset 'synthetic' with "
                                         r"history_length: 0 has none"):
        plan(load_suite(_suite(tmp_path, "reader", "{name: synthetic, history_length: 0}")), plugins)
    with pytest.raises(SuiteError, match=r"method 'reader' needs a user history; dataset 'criteo' has none"):
        plan(load_suite(_suite(tmp_path, "reader", "criteo")), plugins)
    with pytest.raises(SuiteError, match=r"method 'reader' needs item texts; dataset 'synthetic' has none"):
        _plan(tmp_path, "reader", plugins=_with_method(item_text=True))
    assert len(plan(load_suite(_suite(tmp_path, "reader", "movielens-100k")), _with_method(item_text=True))) == 1
    assert len(plan(load_suite(_suite(tmp_path, "reader", "plain")), plugins)) == 1  # declares nothing: run time


def _suite(tmp_path, method: str, dataset: str):
    path = tmp_path / "d.yaml"
    path.write_text(f"schema_version: 1\nname: needs\ndatasets: [{dataset}]\ndefaults:\n  method: {method}\n")
    return path


def test_an_undeclared_dataset_is_checked_when_its_data_is_loaded(tiny_data):
    entry = _with_method(history=True, item_text=True).registry("methods").get("reader")
    with pytest.raises(RunError, match=r"method 'reader' needs a user history \(sequences\['history'\]\); "
                                       r"dataset 'tiny' has none"):
        check_data_needs(entry, tiny_data)
    with_history = replace(tiny_data, sequences={"history": tiny_data.X[:, 1:2].copy()})
    check_data_needs(_with_method(history=True).registry("methods").get("reader"), with_history)


def test_malformed_needs_are_a_validation_problem_naming_the_plugin(tmp_path):
    with pytest.raises(SuiteError, match=r"method 'reader' \(plugin 'needy'\): needs: unknown PLM family "
                                         r"'causal' \(did you mean 'causal_lm'"):
        _plan(tmp_path, "reader", plugins=_with_method(plm=("causal",)))
    with pytest.raises(PluginError, match="unknown key"):
        MethodNeeds.of({"plms": ("causal_lm",)}, "x")
    assert MethodNeeds(plm="causal_lm").plm == ("causal_lm",)
    assert MethodNeeds(plm=("masked_lm",), ctr=True).describe() == "PLM (masked_lm), CTR backbone"
    assert MethodNeeds().describe() == "nothing"
