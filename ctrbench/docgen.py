"""Generates reference pages from the registries, so docs cannot drift from the code.

``python -m ctrbench.docgen models > docs/models.md``; a test fails when the committed page differs.
"""

from __future__ import annotations

import sys

from ctrbench.plugins import Plugins, load_plugins
from ctrbench.registry import config_defaults

RUNNER_ARGS = ("fields", "num_extra_fields")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _defaults(factory) -> str:
    items = config_defaults(factory, skip=RUNNER_ARGS)
    return ", ".join(f"`{k}={tuple(v) if isinstance(v, list) else v!r}`" for k, v in items.items())


def models_markdown(plugins: Plugins) -> str:
    lines = [
        "# CTR backbones",
        "",
        "Generated from the registry by `python -m ctrbench.docgen models > docs/models.md`; do not edit by hand.",
        "Every key in *default config* can be set in a suite (`ctr: {name: dcnv2, num_cross_layers: 4}`).",
        "`q` is the backbone's final hidden state `interact(E)`, the vector ClickPrompt's prompt generator reads.",
        "",
        "| model | paper | default config | q |",
        "| :--- | :--- | :--- | :--- |",
    ]
    for entry in plugins.registry("ctr").find("*"):
        q = entry.metadata.get("q", "")
        lines.append(f"| `{entry.name}` | {_cell(entry.paper)} | {_cell(_defaults(entry.factory))} | {_cell(q)} |")
    return "\n".join(lines) + "\n"


PAGES = {"models": models_markdown}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in PAGES:
        print(f"usage: python -m ctrbench.docgen {{{'|'.join(PAGES)}}}", file=sys.stderr)
        return 2
    sys.stdout.write(PAGES[argv[0]](load_plugins()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
