"""Suite files (YAML, ``schema_version: 1``): loading, validation into frozen dataclasses, expansion.

Validation happens before anything runs, and every error names the file, the key and its line, so a typo
in a 200-run grid costs seconds, not hours.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ctrbench.errors import SuiteError
from ctrbench.registry import did_you_mean
from ctrbench.spec import ComponentRef, RunSpec
from ctrbench.trainer import TRAIN_KEYS

SCHEMA_VERSION = 1
ANALYSES = ("overall", "compat", "ablation", "longtail", "headtail", "efficiency")
TOP_KEYS = ("schema_version", "name", "description", "analysis", "datasets", "seeds", "defaults", "grid",
            "variants", "exclude", "baseline", "buckets", "significance", "executor", "store")
DEFAULT_KEYS = ("method", "ctr", "plm", "train")
COMPONENTS = ("dataset", "method", "ctr", "plm")
SIGNIFICANCE_KEYS = ("test", "alpha", "correction")
TESTS = ("delong", "ttest")
CORRECTIONS = ("holm", "bh", "none")
BUCKET_KEYS = ("tail_fraction", "head_fraction")


@dataclass(frozen=True)
class Significance:
    test: str = "delong"
    alpha: float = 0.05
    correction: str = "holm"


@dataclass(frozen=True)
class Buckets:
    tail_fraction: float = 0.1
    head_fraction: float = 0.2


@dataclass(frozen=True)
class Suite:
    """A validated suite. ``defaults``/``grid``/``variants`` hold plain values; ``expand`` resolves them."""

    name: str
    path: str
    analysis: str
    datasets: tuple[ComponentRef, ...]
    seeds: tuple[int, ...]
    defaults: dict[str, Any]
    grid: dict[str, list[Any]]
    variants: dict[str, dict[str, Any]]
    exclude: tuple[dict[str, Any], ...]
    baseline: dict[str, str]
    buckets: Buckets = Buckets()
    significance: Significance = Significance()
    executor: ComponentRef = ComponentRef("local")
    description: str = ""
    store: str | None = None
    forced: dict[str, Any] = field(default_factory=dict)  # --set <component>.<key>: applied after the grid


# -- line numbers -------------------------------------------------------------------------------------

def _key_lines(node: yaml.Node, prefix: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    """Map dotted key paths to 1-based line numbers, for error messages."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[path] = k.start_mark.line + 1
            _key_lines(v, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            path = f"{prefix}[{i}]"
            out[path] = v.start_mark.line + 1
            _key_lines(v, path, out)
    return out


class _Ctx:
    """Carries the file and its line map so every check can raise a precise error."""

    def __init__(self, path: str, lines: dict[str, int]) -> None:
        self.path, self.lines = path, lines

    def error(self, key: str, message: str) -> SuiteError:
        line = self.lines.get(key)
        where = f"{self.path}:{line}" if line else self.path
        return SuiteError(f"{where}: key '{key}': {message}" if key else f"{where}: {message}")

    def expect(self, key: str, value: Any, types: type | tuple[type, ...], what: str) -> Any:
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.error(key, f"expected {what}, got {value!r}")
        if not isinstance(value, types):
            raise self.error(key, f"expected {what}, got {type(value).__name__} {value!r}")
        return value

    def known_keys(self, key: str, mapping: dict[str, Any], allowed: tuple[str, ...] | list[str]) -> None:
        for k in mapping:
            if k not in allowed:
                path = f"{key}.{k}" if key else str(k)
                raise self.error(path, f"unknown key{did_you_mean(str(k), list(allowed))}")


# -- loading ------------------------------------------------------------------------------------------

def load_suite(path: str | Path, overrides: list[str] | None = None) -> Suite:
    """Read, validate and apply ``--set key=value`` overrides. Raises ``SuiteError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"{path}: suite file not found") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read suite file: {exc.strerror}") from None
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # the context mark points at where the broken construct starts (the line a user must fix)
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SuiteError(f"{where}: malformed YAML: {problem}") from None
    ctx = _Ctx(str(path), _key_lines(node) if node is not None else {})
    if not isinstance(raw, dict):
        raise ctx.error("", "a suite file must be a YAML mapping")
    raw = apply_overrides(raw, overrides or [], ctx)
    return parse_suite(raw, ctx)


def apply_overrides(raw: dict[str, Any], overrides: list[str], ctx: _Ctx) -> dict[str, Any]:
    """``--set`` semantics: ``dataset=x`` replaces the dataset list, ``ctr=x``/``plm=x``/``method=x`` set
    the default component and drop a grid axis over it, dotted keys (``train.epochs=1``) set one value."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise SuiteError(f"--set {item!r}: expected key=value")
        key, _, text = item.partition("=")
        key = key.strip()
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise SuiteError(f"--set {item!r}: value is not valid YAML") from None
        if key in ("dataset", "datasets"):
            raw["datasets"] = value if isinstance(value, list) else [value]
        elif key == "seeds":
            raw["seeds"] = value if isinstance(value, list) else [value]
        elif key in DEFAULT_KEYS and "." not in key:
            raw.setdefault("defaults", {})[key] = value
            (raw.get("grid") or {}).pop(key, None)
        else:
            parts = key.split(".")
            if parts[0] in DEFAULT_KEYS:
                # applies to every run, after grid and variants (a grid axis over the component would
                # otherwise replace the default it sets)
                raw.setdefault("_forced", {})[key] = value
                parts = ["defaults", *parts]
            if parts[0] not in TOP_KEYS:
                raise SuiteError(f"--set {item!r}: unknown key '{parts[0]}'{did_you_mean(parts[0], list(TOP_KEYS))}")
            target = raw
            for p in parts[:-1]:
                nxt = target.get(p)
                if isinstance(nxt, str) and p in DEFAULT_KEYS:  # "ctr: dnn" becomes "{name: dnn}"
                    nxt = {"name": nxt}
                if nxt is None:
                    nxt = {}
                if not isinstance(nxt, dict):
                    raise SuiteError(f"--set {item!r}: '{p}' is not a mapping")
                target[p] = nxt
                target = nxt
            target[parts[-1]] = value
    return raw


def _component(ctx: _Ctx, key: str, value: Any, *, allow_none: bool = False) -> dict[str, Any] | None:
    """Normalise ``name`` or ``{name: ..., <config>}`` to a dict with a ``name``."""
    if value is None:
        if allow_none:
            return None
        raise ctx.error(key, "must name a component")
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict):
        if "name" not in value or not isinstance(value["name"], str):
            raise ctx.error(key, "a component mapping needs a string 'name'")
        return dict(value)
    raise ctx.error(key, f"expected a name or a mapping with 'name', got {type(value).__name__} {value!r}")


def _check_train(ctx: _Ctx, key: str, train: Any) -> dict[str, Any]:
    ctx.expect(key, train, dict, "a mapping of training settings")
    ctx.known_keys(key, train, list(TRAIN_KEYS))
    for k, v in train.items():
        _check_train_value(ctx, f"{key}.{k}", k, v)
    return dict(train)


def _check_train_value(ctx: _Ctx, path: str, k: str, v: Any) -> None:
    typ = TRAIN_KEYS[k]
    if "bool" in str(typ):
        ctx.expect(path, v, bool, "true or false")
    elif "float" in str(typ):
        ctx.expect(path, v, (int, float), "a number")
    elif "None" in str(typ):
        if v is not None:
            ctx.expect(path, v, int, "an integer or null")
    else:
        ctx.expect(path, v, int, "an integer")
    if k in ("epochs", "batch_size", "eval_batch_size") and v is not None and v < 1:
        raise ctx.error(path, f"must be at least 1, got {v}")


def parse_suite(raw: dict[str, Any], ctx: _Ctx) -> Suite:
    raw = dict(raw)
    forced = raw.pop("_forced", {})
    ctx.known_keys("", raw, TOP_KEYS)
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ctx.error("schema_version", f"must be {SCHEMA_VERSION}, got {version!r}")
    name = ctx.expect("name", raw.get("name"), str, "a string suite name")
    analysis = raw.get("analysis", "overall")
    if analysis not in ANALYSES:
        raise ctx.error("analysis", f"must be one of {', '.join(ANALYSES)}, got {analysis!r}"
                        f"{did_you_mean(str(analysis), list(ANALYSES))}")

    datasets_raw = raw.get("datasets")
    if not isinstance(datasets_raw, list) or not datasets_raw:
        raise ctx.error("datasets", "must be a non-empty list of dataset names or mappings")
    datasets = []
    for i, d in enumerate(datasets_raw):
        comp = _component(ctx, f"datasets[{i}]", d)
        datasets.append(ComponentRef(comp.pop("name"), comp))

    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise ctx.error("seeds", "must be a non-empty list of integers")
    for i, s in enumerate(seeds):
        ctx.expect(f"seeds[{i}]", s, int, "an integer seed")

    defaults_raw = raw.get("defaults") or {}
    ctx.expect("defaults", defaults_raw, dict, "a mapping")
    ctx.known_keys("defaults", defaults_raw, DEFAULT_KEYS)
    defaults: dict[str, Any] = {
        "method": _component(ctx, "defaults.method", defaults_raw.get("method", "ctr")),
        "ctr": _component(ctx, "defaults.ctr", defaults_raw.get("ctr"), allow_none=True),
        "plm": _component(ctx, "defaults.plm", defaults_raw.get("plm"), allow_none=True),
        "train": _check_train(ctx, "defaults.train", defaults_raw.get("train") or {}),
    }

    grid_raw = raw.get("grid") or {}
    ctx.expect("grid", grid_raw, dict, "a mapping of axis → list of values")
    grid: dict[str, list[Any]] = {}
    for axis, values in grid_raw.items():
        _check_axis(ctx, f"grid.{axis}", axis)
        if not isinstance(values, list):
            raise ctx.error(f"grid.{axis}", f"expected a list of values, got {type(values).__name__}")
        if not values:
            raise ctx.error(f"grid.{axis}", "empty grid axis: it would expand to zero runs")
        for i, value in enumerate(values):
            _check_axis_value(ctx, f"grid.{axis}[{i}]", axis, value)
        grid[axis] = list(values)

    variants_raw = raw.get("variants") or {}
    ctx.expect("variants", variants_raw, dict, "a mapping of variant name → overrides")
    variants: dict[str, dict[str, Any]] = {}
    for vname, over in variants_raw.items():
        over = over or {}
        ctx.expect(f"variants.{vname}", over, dict, "a mapping of overrides")
        for axis, value in over.items():
            _check_axis(ctx, f"variants.{vname}.{axis}", axis)
            _check_axis_value(ctx, f"variants.{vname}.{axis}", axis, value)
        variants[str(vname)] = dict(over)

    exclude_raw = raw.get("exclude") or []
    ctx.expect("exclude", exclude_raw, list, "a list of label mappings")
    for i, ex in enumerate(exclude_raw):
        ctx.expect(f"exclude[{i}]", ex, dict, "a mapping of label → value")

    baseline = raw.get("baseline") or {}
    ctx.expect("baseline", baseline, dict, "a mapping of label → value, e.g. {ctr: dnn}")

    buckets_raw = raw.get("buckets") or {}
    ctx.expect("buckets", buckets_raw, dict, "a mapping")
    ctx.known_keys("buckets", buckets_raw, BUCKET_KEYS)
    for k, v in buckets_raw.items():
        ctx.expect(f"buckets.{k}", v, (int, float), "a fraction")
        if not 0 < v < 1:
            raise ctx.error(f"buckets.{k}", f"must be between 0 and 1, got {v}")

    sig_raw = raw.get("significance") or {}
    ctx.expect("significance", sig_raw, dict, "a mapping")
    ctx.known_keys("significance", sig_raw, SIGNIFICANCE_KEYS)
    sig = Significance(**sig_raw)
    if sig.test not in TESTS:
        raise ctx.error("significance.test", f"must be one of {', '.join(TESTS)}, got {sig.test!r}")
    if sig.correction not in CORRECTIONS:
        raise ctx.error("significance.correction", f"must be one of {', '.join(CORRECTIONS)}, got {sig.correction!r}")
    ctx.expect("significance.alpha", sig.alpha, (int, float), "a number")

    executor = _component(ctx, "executor", raw.get("executor", "local"))
    store = raw.get("store")
    if store is not None:
        ctx.expect("store", store, str, "a directory path")
    description = raw.get("description", "")
    ctx.expect("description", description, str, "a string")

    suite = Suite(name=name, path=ctx.path, analysis=analysis, datasets=tuple(datasets), seeds=tuple(seeds),
                  defaults=defaults, grid=grid, variants=variants, exclude=tuple(exclude_raw),
                  baseline={str(k): str(v) for k, v in baseline.items()}, buckets=Buckets(**buckets_raw),
                  significance=sig, executor=ComponentRef(executor.pop("name"), executor),
                  description=description, store=store, forced=forced)
    specs = expand(suite)
    if not specs:
        raise ctx.error("exclude" if suite.exclude else "grid", "the suite expands to zero runs")
    return suite


def _check_axis_value(ctx: _Ctx, key: str, axis: str, value: Any) -> None:
    head, _, sub = axis.partition(".")
    if head == "train" and sub:
        _check_train_value(ctx, key, sub, value)
    elif head == "train":
        _check_train(ctx, key, value)
    elif not sub:
        _component(ctx, key, value, allow_none=head == "plm")


def _check_axis(ctx: _Ctx, key: str, axis: str) -> None:
    head = axis.split(".")[0]
    if head not in ("method", "ctr", "plm", "train"):
        raise ctx.error(key, f"unknown axis '{axis}'{did_you_mean(head, ['method', 'ctr', 'plm', 'train'])}; "
                             "axes are method, ctr, plm, train.<key>, or <component>.<config key>")
    if head == "train" and "." in axis:
        sub = axis.split(".", 1)[1]
        if sub not in TRAIN_KEYS:
            raise ctx.error(key, f"unknown train key '{sub}'{did_you_mean(sub, list(TRAIN_KEYS))}")


# -- expansion ----------------------------------------------------------------------------------------

def _label(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("label") or value.get("name"))
    if value is None:
        return "none"
    return str(value)


def _apply(resolved: dict[str, Any], axis: str, value: Any) -> None:
    head, _, sub = axis.partition(".")
    if not sub:
        if head == "train":
            resolved["train"] = dict(value or {})
        else:
            comp = None if value is None else ({"name": value} if isinstance(value, str) else dict(value))
            if comp is not None:
                comp.pop("label", None)
            resolved[head] = comp
    elif head == "train":
        resolved["train"][sub] = value
    else:
        if resolved[head] is None:
            raise SuiteError(f"axis '{axis}': no {head} is set to configure")
        resolved[head][sub] = value


def _dataset_label(dataset: ComponentRef) -> str:
    """Two configs of one dataset in a suite get distinct labels, e.g. ``synthetic(num_samples=500)``."""
    args = ", ".join(f"{k}={v}" for k, v in sorted(dataset.config.items()))
    return f"{dataset.name}({args})"


def _matches(labels: dict[str, str], pattern: dict[str, Any]) -> bool:
    return all(labels.get(str(k)) == _label(v) for k, v in pattern.items())


def expand(suite: Suite) -> list[RunSpec]:
    """datasets × variants × grid × seeds, minus ``exclude``; deterministic order."""
    axes = list(suite.grid)
    combos = list(itertools.product(*(suite.grid[a] for a in axes))) if axes else [()]
    variants = list(suite.variants.items()) or [("", {})]
    specs: list[RunSpec] = []
    names = [d.name for d in suite.datasets]
    for dataset in suite.datasets:
        dataset_label = dataset.name if names.count(dataset.name) == 1 else _dataset_label(dataset)
        for vname, overrides in variants:
            for combo in combos:
                resolved = copy.deepcopy(suite.defaults)
                labels: dict[str, str] = {"dataset": dataset_label}
                if vname:
                    labels["variant"] = vname
                assignments = [*overrides.items(), *zip(axes, combo, strict=True), *suite.forced.items()]
                # a whole component first, then its keys, whatever order the YAML lists them in
                for axis, value in sorted(assignments, key=lambda kv: "." in kv[0]):
                    _apply(resolved, axis, value)
                for axis, value in zip(axes, combo, strict=True):
                    labels[axis] = _label(value)
                if any(_matches(labels, ex) for ex in suite.exclude):
                    continue
                for seed in suite.seeds:
                    ctr, plm = resolved["ctr"], resolved["plm"]
                    specs.append(RunSpec(
                        suite=suite.name,
                        dataset=dataset,
                        method=_ref(resolved["method"]),
                        ctr=None if ctr is None else _ref(ctr),
                        plm=None if plm is None else _ref(plm),
                        train=dict(resolved["train"]),
                        seed=seed,
                        labels={**labels, "seed": str(seed)},
                    ))
    return specs


def _ref(comp: dict[str, Any]) -> ComponentRef:
    comp = dict(comp)
    return ComponentRef(comp.pop("name"), comp)


def is_baseline(suite: Suite, labels: dict[str, str]) -> bool:
    return bool(suite.baseline) and _matches(labels, suite.baseline)
