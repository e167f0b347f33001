"""The plugin's own tests: run them with `pytest tests/` after `pip install -e .` in this folder."""

from __future__ import annotations

import pytest
from ctrbench_example.plugin import GatedMLP

from ctrbench.plugins import load_plugins
from ctrbench.testing import check_ctr_backbone


@pytest.mark.parametrize("config", [{}, {"hidden_units": [16, 8], "dropout": 0.2}])
def test_gated_mlp_passes_the_conformance_kit(config):
    check_ctr_backbone(GatedMLP, config=config)


def test_gated_mlp_is_registered_by_its_entry_point():
    entry = load_plugins().registry("ctr").get("example-gated-mlp")
    assert entry.factory is GatedMLP and entry.plugin == "example"
