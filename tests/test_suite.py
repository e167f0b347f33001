"""Suite loading, validation errors (file, key, line) and expansion to RunSpecs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ctrbench.errors import SuiteError
from ctrbench.plugins import load_plugins
from ctrbench.runner import plan
from ctrbench.suite import expand, load_suite

GOOD = """
schema_version: 1
name: t
analysis: compat
datasets: [synthetic, {name: synthetic, num_samples: 500}]
seeds: [1, 2]
defaults:
  method: ctr
  ctr: {name: dnn, embed_dim: 8}
  train: {epochs: 1, batch_size: 64}
grid:
  ctr: [lr, fm, {name: dnn, hidden_units: [8], label: dnn-small}]
  train.lr: [0.001, 0.01]
exclude:
  - {ctr: lr, train.lr: 0.01}
baseline: {ctr: fm}
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_expansion_counts_labels_and_configs(tmp_path):
    suite = load_suite(write(tmp_path, GOOD))
    specs = expand(suite)
    # 2 datasets × (3 ctr × 2 lr − 1 excluded) × 2 seeds
    assert len(specs) == 2 * 5 * 2
    small = [s for s in specs if s.labels["ctr"] == "dnn-small"][0]
    assert small.ctr.name == "dnn" and small.ctr.config == {"hidden_units": [8]}
    assert small.train["epochs"] == 1 and small.train["lr"] in (0.001, 0.01)
    assert not any(s.labels["ctr"] == "lr" and s.labels["train.lr"] == "0.01" for s in specs)
    assert len({s.run_id for s in specs}) == len(specs)  # distinct configs → distinct ids


def test_run_id_is_a_content_hash(tmp_path):
    a = expand(load_suite(write(tmp_path, GOOD)))
    b = expand(load_suite(write(tmp_path, GOOD.replace("name: t", "name: other"), "b.yaml")))
    assert [s.run_id for s in a] == [s.run_id for s in b]  # suite name and labels are not identity
    c = expand(load_suite(write(tmp_path, GOOD, "c.yaml"), ["train.epochs=2"]))
    assert not {s.run_id for s in a} & {s.run_id for s in c}


def test_set_overrides(tmp_path):
    # ctr=dcnv2 drops the grid axis over ctr, so the baseline {ctr: fm} would match no config (an error)
    text = GOOD.replace("baseline: {ctr: fm}\n", "")
    suite = load_suite(write(tmp_path, text), ["dataset=movielens-100k", "ctr=dcnv2", "seeds=[7]"])
    specs = expand(suite)
    assert {s.dataset.name for s in specs} == {"movielens-100k"}
    assert {s.ctr.name for s in specs} == {"dcnv2"}  # the grid axis over ctr is dropped
    assert {s.seed for s in specs} == {7}
    assert len(specs) == 2


@pytest.mark.parametrize("text, message", [
    ("schema_version: 1\nname: [unclosed\n", r"suite.yaml:2: malformed YAML"),
    ("schema_version: 1\nname: t\ndatasets: [synthetic]\nseedz: [1]\n",
     r"suite.yaml:4: key 'seedz': unknown key \(did you mean 'seeds'\?\)"),
    ("schema_version: 1\nname: t\ndatasets: [synthetic]\ndefaults:\n  train: {epochs: many}\n",
     r"suite.yaml:5: key 'defaults.train.epochs': expected an integer, got str 'many'"),
    ("schema_version: 1\nname: t\ndatasets: [synthetic]\ndefaults:\n  train: {learning_rate: 0.1}\n",
     r"key 'defaults.train.learning_rate': unknown key"),
    ("schema_version: 1\nname: t\ndatasets: [synthetic]\ngrid:\n  ctr: []\n",
     r"suite.yaml:5: key 'grid.ctr': empty grid axis"),
    ("schema_version: 1\nname: t\ndatasets: [synthetic]\ngrid:\n  ctr: [dnn]\nexclude: [{ctr: dnn}]\n",
     r"key 'exclude': the suite expands to zero runs"),
    ("schema_version: 2\nname: t\ndatasets: [synthetic]\n", r"key 'schema_version': must be 1"),
    ("schema_version: 1\nname: t\ndatasets: []\n", r"key 'datasets': must be a non-empty list"),
    ("schema_version: 1\nname: t\nanalysis: overal\ndatasets: [synthetic]\n",
     r"key 'analysis'.*did you mean 'overall'"),
    ("schema_version: 1\nname: t\ndatasets: [synthetic]\nseeds: [1, two]\n", r"key 'seeds\[1\]': expected an integer"),
    ("- just\n- a list\n", r"must be a YAML mapping"),
])
def test_bad_suites_give_one_line_errors(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_suite_file(tmp_path):
    with pytest.raises(SuiteError, match=r"nope.yaml: suite file not found"):
        load_suite(tmp_path / "nope.yaml")


@pytest.mark.parametrize("override, message", [
    ("ctr=dnnn", r"ctr: unknown ctr 'dnnn' \(did you mean 'dnn'"),
    ("dataset=movielens-1oo", r"dataset: unknown datasets 'movielens-1oo' \(did you mean [^)]*'movielens-100k'"),
    ("method=clickpromt", r"method: unknown methods 'clickpromt' \(did you mean 'clickprompt'"),
    ("ctr.hiden_units=[8]", r"ctr: ctr 'dnn': unknown config key 'hiden_units' \(did you mean 'hidden_units'"),
])
def test_unknown_components_and_keys_name_the_suite(tmp_path, override, message):
    # without the ctr axis, the baseline {ctr: fm} would match no config (an error of its own): drop it
    path = write(tmp_path, GOOD.replace("  ctr: [lr, fm, {name: dnn, hidden_units: [8], label: dnn-small}]\n", "")
                 .replace("baseline: {ctr: fm}\n", ""))
    suite = load_suite(path, [override])
    with pytest.raises(SuiteError, match=message) as info:
        plan(suite, load_plugins())
    assert str(info.value).startswith(str(path))


def test_shipped_suites_validate():
    root = Path(__file__).parent.parent / "suites"
    plugins = load_plugins()
    for path in sorted(root.glob("*.yaml")):
        assert plan(load_suite(path), plugins), path


def test_component_keys_apply_after_the_component_whatever_the_order(tmp_path):
    text = GOOD.replace("grid:\n", "grid:\n  ctr.embed_dim: [4, 8]\n")
    specs = expand(load_suite(write(tmp_path, text)))
    assert {s.ctr.config.get("embed_dim") for s in specs} == {4, 8}
    assert len({s.run_id for s in specs}) == len(specs)


def test_set_component_key_reaches_every_grid_value(tmp_path):
    specs = expand(load_suite(write(tmp_path, GOOD), ["ctr.embed_dim=32"]))
    assert {s.ctr.config["embed_dim"] for s in specs} == {32}
    assert {s.labels["ctr"] for s in specs} == {"lr", "fm", "dnn-small"}


def test_two_configs_of_one_dataset_get_distinct_labels(tmp_path):
    specs = expand(load_suite(write(tmp_path, GOOD)))
    assert {s.labels["dataset"] for s in specs} == {"synthetic()", "synthetic(num_samples=500)"}


@pytest.mark.parametrize("grid, message", [
    ("  ctr: [{embed_dim: 4}]\n", r"key 'grid.ctr\[0\]': a component mapping needs a string 'name'"),
    ("  train.lr: [fast]\n", r"key 'grid.train.lr\[0\]': expected a number, got str 'fast'"),
    ("  train.epochs: [1.5]\n", r"key 'grid.train.epochs\[0\]': expected an integer"),
])
def test_grid_values_are_validated(tmp_path, grid, message):
    text = GOOD.replace("grid:\n  ctr: [lr, fm, {name: dnn, hidden_units: [8], label: dnn-small}]\n"
                        "  train.lr: [0.001, 0.01]\n", "grid:\n" + grid).replace(
                            "exclude:\n  - {ctr: lr, train.lr: 0.01}\n", "")
    with pytest.raises(SuiteError, match=message):
        load_suite(write(tmp_path, text))


def test_config_values_are_typed_at_validation(tmp_path):
    path = write(tmp_path, GOOD.replace("{name: dnn, hidden_units: [8], label: dnn-small}",
                                        '{name: dnn, embed_dim: "8", label: dnn-small}'))
    with pytest.raises(SuiteError) as info:
        plan(load_suite(path), load_plugins())
    assert str(info.value) == f"{path}: ctr: ctr 'dnn': embed_dim must be an integer, got str '8'"


def test_two_bad_values_are_both_reported(tmp_path):
    path = write(tmp_path, GOOD.replace("  ctr: [lr, fm, {name: dnn, hidden_units: [8], label: dnn-small}]\n", "")
                 .replace("baseline: {ctr: fm}\n", ""))
    suite = load_suite(path, ['ctr={name: dnn, embed_dim: "8", batch_norm: "no"}'])
    with pytest.raises(SuiteError) as info:
        plan(suite, load_plugins())
    assert str(info.value) == (f"{path}: ctr: ctr 'dnn': embed_dim must be an integer, got str '8'; "
                               "batch_norm must be true or false, got str 'no'")


def test_every_bad_training_setting_is_reported_at_once(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("schema_version: 1\nname: t\ndatasets: [synthetic]\ndefaults:\n  train:\n    epochs: 0\n"
                    "    batchsize: 64\n    lr: .nan\n    cpu_amp: 'yes'\n")
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value) == (
        f"{path}:6: 4 bad training settings: key 'defaults.train.epochs': must be at least 1, got 0; "
        "key 'defaults.train.batchsize': unknown key (did you mean 'batch_size', 'eval_batch_size'?); "
        "key 'defaults.train.lr': must be a finite number, got nan; "
        "key 'defaults.train.cpu_amp': expected true or false, got str 'yes'")
    path.write_text(path.read_text().replace("    batchsize: 64\n    lr: .nan\n    cpu_amp: 'yes'\n", ""))
    with pytest.raises(SuiteError) as info:  # one bad setting: the single-key form, with its line
        load_suite(path)
    assert str(info.value) == f"{path}:6: key 'defaults.train.epochs': must be at least 1, got 0"
