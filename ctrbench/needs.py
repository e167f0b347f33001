"""What a method needs from a run, against what the run gives it: checked by ``ctrbench validate`` from the
registrations alone (``needs=`` of methods, ``family=`` of PLMs, ``provides=`` of datasets), and, for datasets that
declare nothing, when their data is loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctrbench.errors import PluginError, RunError
from ctrbench.protocols import MethodNeeds, Provides
from ctrbench.spec import RunSpec, canonical_json

if TYPE_CHECKING:
    from ctrbench.data.types import CTRData
    from ctrbench.plugins import Plugins


def _entry(plugins: Plugins, kind: str, name: str) -> Any:
    """The registry entry, or None when the name is unknown or taken twice (reported by the name check)."""
    try:
        return plugins.registry(kind).get(name)
    except PluginError:
        return None


def method_needs(entry: Any) -> MethodNeeds | None:
    """A method entry's declared ``needs`` (None when it declares none)."""
    return MethodNeeds.of(entry.metadata.get("needs"), f"method '{entry.name}' (plugin '{entry.plugin}')")


def dataset_provides(entry: Any) -> Provides | None:
    """A dataset entry's declared ``provides`` (None when it declares none)."""
    return Provides.of(entry.metadata.get("provides"), f"dataset '{entry.name}' (plugin '{entry.plugin}')")


def needs_problems(specs: list[RunSpec], plugins: Plugins) -> list[str]:
    """What the runs of a suite fail to give their methods, from the registrations alone (nothing is built or
    loaded): the PLM family a method accepts (a PLM's ``family=`` metadata), a CTR backbone, and a user history
    or item texts from a dataset that declares it has none (``provides=``). A method or dataset that declares
    nothing is not checked. One message per distinct problem, e.g. ``method: method 'tallrec' needs a PLM of
    family causal_lm or seq2seq_lm; plm 'bert-tiny' is a masked_lm``."""
    problems: list[str] = []
    seen: set[str] = set()
    for spec in specs:
        sig = canonical_json([spec.method.name, spec.dataset.name, spec.dataset.config, spec.ctr is None,
                              spec.plm.name if spec.plm else None])
        if sig in seen:
            continue
        seen.add(sig)
        method = _entry(plugins, "methods", spec.method.name)
        if method is None:
            continue
        try:
            needs = method_needs(method)
        except PluginError as exc:
            problems.append(f"method: {exc}")
            continue
        if needs is None:
            continue
        who = f"method: method '{method.name}' needs"
        if needs.plm:
            families = " or ".join(needs.plm)
            plm = _entry(plugins, "plm", spec.plm.name) if spec.plm else None
            if spec.plm is None:
                problems.append(f"{who} a PLM of family {families} (plm:), and the run sets none")
            elif plm is not None and plm.metadata.get("family") not in (None, *needs.plm):
                problems.append(f"{who} a PLM of family {families}; plm '{plm.name}' is a "
                                f"{plm.metadata['family']}")
        if needs.ctr and spec.ctr is None:
            problems.append(f"{who} a CTR backbone (ctr:), and the run sets none")
        dataset = _entry(plugins, "datasets", spec.dataset.name)
        if dataset is None or not (needs.history or needs.item_text):
            continue
        try:
            provides = dataset_provides(dataset)
        except PluginError as exc:
            problems.append(f"dataset: {exc}")
            continue
        if provides is None:
            continue
        if needs.history and not provides.has_history(spec.dataset.config, dataset.factory):
            how = (f" with {provides.history}: {spec.dataset.config.get(provides.history, 0)}"
                   if isinstance(provides.history, str) else "")
            problems.append(f"{who} a user history; dataset '{dataset.name}'{how} has none")
        if needs.item_text and not provides.item_text:
            problems.append(f"{who} item texts; dataset '{dataset.name}' has none")
    return problems


def check_data_needs(method: Any, data: CTRData) -> None:
    """At run time, for datasets that declare nothing: a `RunError` when the loaded data lacks the history or
    the item texts the method declares it needs."""
    needs = method_needs(method)
    if needs is None:
        return
    if needs.history and "history" not in data.sequences:
        raise RunError(f"method '{method.name}' needs a user history (sequences['history']); dataset "
                       f"'{data.name}' has none")
    if needs.item_text:
        from ctrbench.text.templates import item_side_fields

        if not item_side_fields(data):
            raise RunError(f"method '{method.name}' needs item texts; dataset '{data.name}' has no item-side "
                           "text fields")


__all__ = ["check_data_needs", "dataset_provides", "method_needs", "needs_problems"]
