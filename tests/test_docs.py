"""Docs that are generated from the code must match it; every component is documented."""

from __future__ import annotations

from pathlib import Path

from ctrbench.docgen import models_markdown
from ctrbench.plugins import load_plugins

DOCS = Path(__file__).parent.parent / "docs"


def builtin_only():
    plugins = load_plugins()
    reg = plugins.registry("ctr")
    reg._entries = {k: e for k, e in reg._entries.items() if e.plugin == "builtin-ctr"}  # ignore third-party
    return plugins


def test_models_page_is_up_to_date():
    expected = models_markdown(builtin_only())
    actual = (DOCS / "models.md").read_text()
    assert actual == expected, "docs/models.md is stale: run `python -m ctrbench.docgen models > docs/models.md`"


def test_every_builtin_model_has_paper_and_q():
    for entry in builtin_only().registry("ctr").find("*"):
        assert entry.paper and entry.metadata.get("q"), entry.name
        assert f"| `{entry.name}` |" in models_markdown(builtin_only())
