"""The plugin kinds, in one table: everything that lists kinds (registries, hooks, suite keys, validation,
provenance, ``ctrbench list``, generated docs, conformance tests) reads it from here.

Adding a kind is adding a row here, a hook in ``hookspecs.py``, a protocol in ``protocols.py``, a check in
``ctrbench.testing`` and a page renderer in ``ctrbench.docgen``; ``tests/test_docs.py`` fails until all five
exist.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ctrbench.protocols import PLM, CTRBackbone, Dataset, Executor, Method
from ctrbench.spec import RunSpec


@dataclass(frozen=True)
class Kind:
    """One plugin kind.

    ``name``: the registry name (``Plugins.registry(name)``, ``ctrbench list NAME``). ``hook``: the hookspec
    that registers it. ``protocol``: what its factories build (``ctrbench.protocols``). ``label``: the singular
    word for messages. ``page``: its generated reference page, relative to the repository root. ``check``: its
    conformance check in ``ctrbench.testing``. ``key``: its key in a suite (``defaults.<key>``, grid axis, label)
    and its `RunSpec` attribute when ``per_run``. ``axis``: a suite may set it in ``defaults``, ``grid`` and
    ``variants``. ``optional``: a run may have none. ``default``: the suite's default when it sets none.
    ``reserved``: factory arguments the runner passes itself, never settable from a suite.
    """

    name: str
    hook: str
    protocol: type
    label: str
    page: str
    check: str
    key: str
    per_run: bool = True
    axis: bool = False
    optional: bool = False
    default: str | None = None
    reserved: tuple[str, ...] = ()


KINDS: tuple[Kind, ...] = (
    Kind("datasets", "ctrbench_register_datasets", Dataset, "dataset", "docs/reference/datasets.md",
         "check_dataset", "dataset"),
    Kind("ctr", "ctrbench_register_ctr_backbones", CTRBackbone, "CTR backbone", "docs/models.md",
         "check_ctr_backbone", "ctr", axis=True, optional=True, reserved=("fields", "num_extra_fields")),
    Kind("plm", "ctrbench_register_plms", PLM, "PLM", "docs/reference/plms.md", "check_plm", "plm",
         axis=True, optional=True),
    Kind("methods", "ctrbench_register_methods", Method, "method", "docs/reference/methods.md", "check_method",
         "method", axis=True, default="ctr"),
    Kind("executors", "ctrbench_register_executors", Executor, "executor", "docs/reference/executors.md",
         "check_executor", "executor", per_run=False, default="local"),
)

NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)
# The components of every run, in the order of the RunSpec fields (dataset, method, ctr, plm): validation
# messages and provenance list them in that order. And those a suite may vary in defaults/grid/variants.
_SPEC_FIELDS = [f.name for f in fields(RunSpec)]
PER_RUN: tuple[Kind, ...] = tuple(sorted((k for k in KINDS if k.per_run), key=lambda k: _SPEC_FIELDS.index(k.key)))
AXES: tuple[Kind, ...] = tuple(k for k in PER_RUN if k.axis)


def kind(name: str) -> Kind:
    """The kind named ``name`` (its registry name, e.g. ``"ctr"``, or its suite key, e.g. ``"method"``)."""
    for k in KINDS:
        if name in (k.name, k.key):
            return k
    raise KeyError(f"unknown kind {name!r}; kinds are {', '.join(NAMES)}")


__all__ = ["AXES", "KINDS", "NAMES", "PER_RUN", "Kind", "kind"]
