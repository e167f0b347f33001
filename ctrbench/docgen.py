"""Generates the reference page of every plugin kind from the registries, so docs cannot drift from the code.

``python -m ctrbench.docgen models`` prints ``docs/models.md`` (CTR backbones); ``datasets``, ``plms``,
``methods`` and ``executors`` print the other pages (their paths are in ``ctrbench.kinds``);
``python -m ctrbench.docgen --write`` rewrites every page, from the repository root. Pages list the components
of ctrbench's own plugins, not whatever else is installed. ``tests/test_docs.py`` fails when a committed page
differs from what this module generates.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctrbench.kinds import KINDS, Kind
from ctrbench.plugins import Plugins, load_plugins
from ctrbench.protocols import FAMILIES, MethodNeeds, Provides, runs_elsewhere
from ctrbench.registry import config_defaults

RUNNER_ARGS = ("fields", "num_extra_fields")
DISTRIBUTION = "ctrbench"  # pages document the components this distribution's plugins register


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(v: Any) -> str:
    return repr(tuple(v) if isinstance(v, list) else v)


def _defaults(factory: Callable[..., Any]) -> str:
    items = config_defaults(factory, skip=RUNNER_ARGS)
    return ", ".join(f"`{k}={_value(v)}`" for k, v in items.items())


def _required(factory: Callable[..., Any]) -> list[str]:
    import inspect

    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in RUNNER_ARGS
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _config(factory: Callable[..., Any]) -> str:
    required = ", ".join(f"`{k}` (required)" for k in _required(factory))
    return ", ".join(part for part in (required, _defaults(factory)) if part)


def _header(kind: Kind, title: str, command: str, intro: list[str]) -> list[str]:
    return [
        f"# {title}",
        "",
        f"Generated from the registry by `python -m ctrbench.docgen {command} > {kind.page}`; do not edit by hand.",
        f"Every component here builds a `ctrbench.protocols.{kind.protocol.__name__}` and passes "
        f"`ctrbench.testing.{kind.check}` (`tests/test_conformance.py` runs it on each).",
        *intro,
    ]


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


def datasets_markdown(plugins: Plugins) -> str:
    kind = _kind("datasets")
    lines = _header(kind, "Dataset reference", "datasets", [
        "How each dataset is prepared, and how to get its files: [datasets.md](../datasets.md).",
        "*history* and *item text* are what the data holds beyond ID features (`provides=` in the registration);",
        "`ctrbench validate` refuses a method that needs what a dataset lacks.",
        "",
        "| dataset | summary | raw files | history | item text | config |",
        "| :--- | :--- | :--- | :--- | :--- | :--- |",
    ])
    for entry in plugins.registry(kind.name).find("*"):
        provides = Provides.of(entry.metadata.get("provides"), entry.name)
        history = item_text = "?"
        if provides is not None:
            history = ("yes" if provides.history else "no") if isinstance(provides.history, bool) else \
                f"when `{provides.history}` > 0"
            item_text = "yes" if provides.item_text else "no"
        lines.append(f"| `{entry.name}` | {_cell(entry.summary)} | {_cell(entry.metadata.get('source', ''))} | "
                     f"{history} | {item_text} | {_cell(_config(entry.factory))} |")
    return "\n".join(lines) + "\n"


def plms_markdown(plugins: Plugins) -> str:
    kind = _kind("plm")
    families = [f"- `{f.name}`: {f.summary} (`ctrbench.protocols.{f.protocol.__name__}`; tiny test model "
                f"`{f.tiny}`)" for f in FAMILIES]
    lines = _header(kind, "PLM reference", "plms", [
        "A PLM's *family* says which interface it has and which methods take it:",
        "",
        *families,
        "",
        "Weights are read when a run builds the PLM, never when plugins load. Every factory takes `path=` to load a",
        "local folder laid out like the hub's instead of its default source.",
        "",
        "| PLM | family | summary | weights | size | paper | config |",
        "| :--- | :--- | :--- | :--- | :--- | :--- | :--- |",
    ])
    for entry in plugins.registry(kind.name).find("*"):
        meta = entry.metadata
        size = ", ".join(f"{meta[key]} {word}" if key != "hidden" else f"hidden {meta[key]}"
                         for key, word in (("layers", "layers"), ("hidden", ""), ("params", "params")) if key in meta)
        lines.append(f"| `{entry.name}` | {_cell(meta.get('family', '?'))} | {_cell(entry.summary)} | "
                     f"{_cell(meta.get('source', ''))} | {size} | {_cell(entry.paper)} | "
                     f"{_cell(_config(entry.factory))} |")
    return "\n".join(lines) + "\n"


def methods_markdown(plugins: Plugins) -> str:
    kind = _kind("methods")
    lines = _header(kind, "Method reference", "methods", [
        "*needs* is what a method declares it needs from a run (`needs=MethodNeeds(...)` in the registration):",
        "the PLM families it accepts, a CTR backbone, a user history, item texts. `ctrbench validate` checks every",
        "run of a suite against it before anything runs. The methods' own pages: [methods/](../methods/).",
        "",
        "| method | summary | needs | paper | config |",
        "| :--- | :--- | :--- | :--- | :--- |",
    ])
    for entry in plugins.registry(kind.name).find("*"):
        needs = MethodNeeds.of(entry.metadata.get("needs"), entry.name)
        lines.append(f"| `{entry.name}` | {_cell(entry.summary)} | {needs.describe() if needs else '(undeclared)'} | "
                     f"{_cell(entry.paper)} | {_cell(_config(entry.factory))} |")
    return "\n".join(lines) + "\n"


def executors_markdown(plugins: Plugins) -> str:
    kind = _kind("executors")
    lines = _header(kind, "Executor reference", "executors", [
        "*where* is where runs happen: `elsewhere` for executors whose class sets `remote = True` (then `--device`",
        "is resolved on the machines that run them). Using them: [scaling.md](../scaling.md).",
        "",
        "| executor | summary | where | config |",
        "| :--- | :--- | :--- | :--- |",
    ])
    for entry in plugins.registry(kind.name).find("*"):
        where = "elsewhere" if runs_elsewhere(entry.factory) else "this machine"
        lines.append(f"| `{entry.name}` | {_cell(entry.summary)} | {where} | {_cell(_config(entry.factory))} |")
    return "\n".join(lines) + "\n"


# kind name -> (page name for the command line, renderer)
PAGES: dict[str, tuple[str, Callable[[Plugins], str]]] = {
    "datasets": ("datasets", datasets_markdown),
    "ctr": ("models", models_markdown),
    "plm": ("plms", plms_markdown),
    "methods": ("methods", methods_markdown),
    "executors": ("executors", executors_markdown),
}


def _kind(name: str) -> Kind:
    return next(k for k in KINDS if k.name == name)


def builtin(plugins: Plugins) -> Plugins:
    """The plugins with every registry narrowed to the components of ctrbench's own plugins."""
    from ctrbench.registry import Registry

    own = {i.name for i in plugins.infos if i.distribution == DISTRIBUTION}
    registries: dict[str, Registry[Any]] = {}
    for name, registry in plugins.registries.items():
        narrowed: Registry[Any] = Registry(name)
        for entry in registry.find("*"):
            if entry.plugin in own:
                narrowed.add(entry.name, entry.factory, plugin=entry.plugin, summary=entry.summary,
                             paper=entry.paper, **entry.metadata)
        registries[name] = narrowed
    return Plugins(plugins.pm, registries, plugins.infos)


def render(kind: Kind, plugins: Plugins) -> str:
    """The reference page of ``kind`` for ``plugins`` (narrow them with `builtin` first for the shipped pages)."""
    return PAGES[kind.name][1](plugins)


def write_all(root: Path, plugins: Plugins | None = None) -> list[Path]:
    """Rewrite every kind's page under ``root`` (the repository root); returns the paths written."""
    plugins = builtin(plugins or load_plugins())
    written = []
    for kind in KINDS:
        path = root / kind.page
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(kind, plugins), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    by_page = {page: kind for kind in KINDS for page in (PAGES[kind.name][0], kind.name)}
    if argv == ["--write"]:
        for path in write_all(Path.cwd()):
            print(path, file=sys.stderr)
        return 0
    if len(argv) != 1 or argv[0] not in by_page:
        pages = "|".join(PAGES[k.name][0] for k in KINDS)
        print(f"usage: python -m ctrbench.docgen {{{pages}}}  (prints the page)\n"
              f"       python -m ctrbench.docgen --write  (rewrites every page under docs/)", file=sys.stderr)
        return 2
    sys.stdout.write(render(by_page[argv[0]], builtin(load_plugins())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
