"""The worked method example of docs/plugins.md ("Write a method on the engine"), run as written.

The example's code block is read from the guide, executed as a module and registered as an in-process plugin
(``load_plugins(extra=...)``), so the guide cannot drift from what works. It must pass the method conformance kit,
and each of its two phases must do what the guide says: ``align`` lowers the alignment loss and moves the
backbone's item-ID embeddings (only those) towards their texts; ``fit`` finetunes that same backbone, and the
predictions and the reported epochs come from the finetune.
"""

from __future__ import annotations

import re
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctrbench.context import RunContext
from ctrbench.errors import SuiteError
from ctrbench.plugins import load_plugins
from ctrbench.protocols import MethodNeeds
from ctrbench.runner import plan
from ctrbench.spec import ComponentRef, RunSpec
from ctrbench.stats import auc
from ctrbench.suite import load_suite
from ctrbench.testing import check_method, synthetic_data
from ctrbench.text import item_texts
from ctrbench.trainer import NullReporter, TrainConfig, Trainer

GUIDE = Path(__file__).parent.parent / "docs" / "plugins.md"
NAME = "item-align"
PLUGIN = "guide-item-align"
ALIGN_EPOCHS = 12  # differs from train.epochs below, so the epochs a method reports tell its phases apart
TRAIN = {"epochs": 3, "batch_size": 64}


def python_blocks(markdown: str) -> list[tuple[int, str]]:
    """``(first line, code)`` of every fenced ``python`` block of a markdown text (lines counted from 1)."""
    blocks, lines = [], markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            blocks.append((i + 2, "\n".join(lines[i + 1:end]) + "\n"))
            i = end
        i += 1
    return blocks


def guide_example() -> types.ModuleType:
    """The guide's example block as a module; tracebacks name docs/plugins.md and its line numbers."""
    found = [(line, code) for line, code in python_blocks(GUIDE.read_text(encoding="utf-8"))
             if f'register("{NAME}"' in code]
    assert len(found) == 1, f"docs/plugins.md: expected one python block registering {NAME!r}, found {len(found)}"
    line, code = found[0]
    module = types.ModuleType("ctrbench_guide_item_align")
    exec(compile("\n" * (line - 1) + code, str(GUIDE), "exec"), module.__dict__)  # our own docs
    return module


@pytest.fixture(scope="module")
def example() -> types.ModuleType:
    return guide_example()


@pytest.fixture(scope="module")
def plugins(example):
    return load_plugins(extra=[(PLUGIN, example)])


def test_the_example_registers_its_method_with_what_it_needs(plugins, example):
    entry = plugins.registry("methods").get(NAME)
    assert entry.plugin == PLUGIN and entry.factory is example.ItemAlign
    assert MethodNeeds.of(entry.metadata["needs"], NAME) == MethodNeeds(ctr=True, item_text=True)
    assert entry.metadata["quick_config"] == {"align_epochs": 5}


def test_the_example_passes_the_method_conformance_kit(plugins):
    entry = plugins.registry("methods").get(NAME)
    check_method(entry.factory, config=entry.metadata["quick_config"], needs=entry.metadata["needs"],
                 plugins=plugins, name=NAME)


def _context(plugins, data, stages: Path, seed: int = 0) -> RunContext:
    spec = RunSpec("guide", ComponentRef(data.name), ComponentRef(NAME, {"align_epochs": ALIGN_EPOCHS}),
                   ComponentRef("dnn", {"embed_dim": 8, "hidden_units": [16]}), None, dict(TRAIN), seed)
    device = torch.device("cpu")
    trainer = Trainer(TrainConfig.from_dict(spec.train), device, NullReporter(), run_name="guide", seed=seed)
    return RunContext(spec, data, plugins, trainer, device, trainer.reporter, stages)


def _text_structure(item_table: torch.Tensor, texts: list[str]) -> float:
    """Mean cosine similarity of the ID embeddings of two items with the same text, minus that of two items with
    different texts (items 1..n; 0 is unknown): about 0 for random embeddings, near 2 when each text's items point
    one way. Computed from the backbone's table alone, so it measures the alignment independently of the method."""
    _, group = np.unique(texts[1:], return_inverse=True)
    same = torch.from_numpy(group[:, None] == group[None, :]) & ~torch.eye(len(group), dtype=torch.bool)
    different = torch.from_numpy(group[:, None] != group[None, :])
    z = F.normalize(item_table[1:].float(), dim=-1)
    cos = z @ z.T
    return float(cos[same].mean() - cos[different].mean())


def test_align_moves_the_item_embeddings_towards_their_texts_then_fit_finetunes_that_backbone(
        plugins, tmp_path, monkeypatch):
    data = synthetic_data(num_samples=600)
    texts = item_texts(data)
    assert len(set(texts[1:])) > 1 and len(set(texts[1:])) < len(texts) - 1  # shared texts, and several of them
    ctx = _context(plugins, data, tmp_path / "stages")
    trainer = ctx.trainer

    built, fitted, phases, reports = [], [], [], []
    seen: dict[str, object] = {}
    build_ctr, run, fit = ctx.build_ctr, trainer.engine.run, trainer.fit

    def spy_build_ctr(*args, **kwargs):
        built.append(build_ctr(*args, **kwargs))
        return built[-1]

    def tables() -> dict[str, torch.Tensor]:
        return {f: built[-1].embedding.table(f).detach().clone() for f in ("item_id", "user_id")}

    def alignment_loss(phase) -> float:  # the phase's own objective, on every item at once
        with torch.no_grad():
            return float(phase.loss(torch.arange(1, len(texts))))

    def spy_run(phase):
        phases.append(phase)
        if phase.monitor is None:
            seen["tables before"], seen["loss before"] = tables(), alignment_loss(phase)
        report = run(phase)
        if phase.monitor is None:
            seen["tables after"], seen["loss after"] = tables(), alignment_loss(phase)
        reports.append(report)
        return report

    def spy_fit(model, data, **kwargs):
        fitted.append(model)
        return fit(model, data, **kwargs)

    monkeypatch.setattr(ctx, "build_ctr", spy_build_ctr)
    monkeypatch.setattr(trainer.engine, "run", spy_run)
    monkeypatch.setattr(trainer, "fit", spy_fit)

    preds = plugins.registry("methods").get(NAME).create(align_epochs=ALIGN_EPOCHS).run(ctx)

    # two phases, in order: the alignment without a monitor, then fit's finetune of the same backbone
    assert [p.name for p in phases] == ["align", "train"]
    assert phases[0].monitor is None and phases[1].monitor is not None
    assert phases[0].epochs == ALIGN_EPOCHS and phases[1].epochs == TRAIN["epochs"]
    assert len(built) == 1 and len(fitted) == 1 and fitted[0] is built[0]
    ctr = built[0]
    assert any(p is ctr.embedding.weight for p in phases[0].params), "align does not train the backbone's table"

    # align did its job, measured from outside the method
    assert seen["loss after"] < 0.5 * seen["loss before"], (seen["loss before"], seen["loss after"])
    before = _text_structure(seen["tables before"]["item_id"], texts)
    after = _text_structure(seen["tables after"]["item_id"], texts)
    assert after > 0.6 and after - before > 0.5, (before, after)
    assert torch.equal(seen["tables before"]["user_id"], seen["tables after"]["user_id"]), "align moved user rows"

    # the predictions are the finetuned backbone's, with the best validation epoch's weights restored
    align_report, fit_report = reports
    for split in ("valid", "test"):
        p = np.asarray(getattr(preds, split))
        assert p.shape == (len(data.splits[split]),)
        assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
        np.testing.assert_allclose(p, trainer.predict(ctr, data, split), rtol=0, atol=1e-7)
    y_valid = np.asarray(data.y)[data.splits["valid"]]
    assert auc(y_valid, preds.valid) == pytest.approx(fit_report.best_valid_auc, abs=1e-9)

    # what the method reports comes from the finetune's report (and the time from both phases)
    assert preds.epochs == fit_report.epochs_run != align_report.epochs_run
    assert preds.extra["best_epoch"] == fit_report.best_epoch
    assert preds.extra["align_loss"] == align_report.history[-1]["train_loss"]
    assert preds.train_seconds == pytest.approx(fit_report.train_seconds)  # the final training only
    assert preds.extra["align_seconds"] == pytest.approx(align_report.train_seconds)  # the stage before it
    assert preds.n_params == sum(p.numel() for p in ctr.parameters())


SUITE = """\
schema_version: 1
name: guide
datasets: [%s]
defaults:
  method: {name: item-align, align_epochs: 10}
  ctr: dnn
"""


def test_validate_refuses_it_on_a_dataset_without_item_texts_as_the_guide_says(plugins, tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE % "{name: synthetic, num_samples: 300}"))
    with pytest.raises(SuiteError) as info:
        plan(load_suite(path), plugins)
    message = "method: method 'item-align' needs item texts; dataset 'synthetic' has none"
    assert message in str(info.value)
    guide = re.sub(r"\s+", " ", GUIDE.read_text(encoding="utf-8"))
    assert message in guide, "docs/plugins.md quotes another message"
    path.write_text(textwrap.dedent(SUITE % "movielens-100k"))
    assert len(plan(load_suite(path), plugins)) == 1
