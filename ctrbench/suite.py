"""Suite files (YAML, ``schema_version: 1``): loading, validation into frozen dataclasses, expansion.

Validation happens before anything runs, and every error names the file, the key and its line, so a typo
in a 200-run grid costs seconds, not hours.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from ctrbench import yaml_safe
from ctrbench.errors import SuiteError
from ctrbench.kinds import AXES, PER_RUN
from ctrbench.kinds import kind as kind_of
from ctrbench.names import InvalidName, check_slug
from ctrbench.registry import did_you_mean
from ctrbench.spec import ComponentRef, RunSpec
from ctrbench.trainconfig import TRAIN_CHOICES, TRAIN_KEYS, TrainConfig

SCHEMA_VERSION = 1
ANALYSES = ("overall", "compat", "ablation", "longtail", "headtail", "efficiency")
TOP_KEYS = ("schema_version", "name", "description", "analysis", "datasets", "seeds", "defaults", "grid",
            "variants", "exclude", "baseline", "buckets", "significance", "rel_impr", "executor", "store")
# The components a suite may set in `defaults`, `grid` and `variants` (from the kinds table), and `train`.
DEFAULT_KEYS = (*(k.key for k in AXES), "train")
COMPONENTS = tuple(k.key for k in PER_RUN)  # what every RunSpec names (None where optional and unset)
SIGNIFICANCE_KEYS = ("test", "alpha", "correction", "compare")
TESTS = ("auto", "ttest", "delong")
REL_IMPR_KEYS = ("mode", "proposed")
REL_IMPR_MODES = ("vs_baseline", "proposed_over_row")
# Label values that all mean "no component": YAML null, and the words a user may type for it.
NONE_LABELS = ("none", "null", "~", "")
CORRECTIONS = ("holm", "bh", "none")
BUCKET_KEYS = ("tail_fraction", "head_fraction")
MAX_SEED = 2**32  # seeds are numpy/torch seeds: 0 <= seed < 2**32
# Smallest value of the train keys that have one: at least one epoch and one training row; eval_max_samples
# needs a positive and a negative row for an AUC, so at least 2. A value above the split's size means "all".
TRAIN_MINIMUMS = {"epochs": 1, "batch_size": 1, "eval_batch_size": 1, "max_samples": 1, "eval_max_samples": 2}


@dataclass(frozen=True)
class Significance:
    """How a board marks a config as significantly better/worse than its baseline.

    ``test="auto"`` is the papers' protocol (a two-sided paired t-test over seeds on test AUC) when a cell has
    at least 3 seeds paired with its baseline, and DeLong's test per seed (test-set noise only) otherwise.
    ``compare`` (label patterns) names the configs that are tested, i.e. the correction's family; empty means
    every config against its baseline."""

    test: str = "auto"
    alpha: float = 0.05
    correction: str = "holm"
    compare: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class RelImpr:
    """``vs_baseline``: (AUC − AUC_base) / AUC_base for each row. ``proposed_over_row``: the definition of the
    papers' Table 2, (AUC_proposed − AUC_row) / AUC_row, with the proposed config named by a label pattern."""

    mode: str = "vs_baseline"
    proposed: dict[str, str] = field(default_factory=dict)


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
    rel_impr: RelImpr = RelImpr()
    executor: ComponentRef = ComponentRef("local")
    description: str = ""
    store: str | None = None
    forced: dict[str, Any] = field(default_factory=dict)  # --set <component>.<key>: applied after the grid

    @cached_property
    def runs(self) -> tuple[RunSpec, ...]:
        """The suite's runs (`expand`), computed once per Suite object: loading, planning, running and the
        leaderboard all ask for them (``dataclasses.replace`` makes a new object, expanded afresh)."""
        return tuple(_expand(self))

    def with_executor(self, executor: ComponentRef) -> Suite:
        """This suite on another executor (``--executor``, ``--workers``): the same runs, not expanded again."""
        suite = dataclasses.replace(self, executor=executor)
        if "runs" in self.__dict__:
            suite.__dict__["runs"] = self.runs
        return suite

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a `RunJob` sent to workers) without the cached runs."""
        state = dict(self.__dict__)
        state.pop("runs", None)
        return state


# -- line numbers -------------------------------------------------------------------------------------

def _key_lines(node: yaml.Node, prefix: str = "", out: dict[str, int] | None = None,
               seen: set[int] | None = None) -> dict[str, int]:
    """Map dotted key paths to 1-based line numbers, for error messages.

    Each node is walked once: an alias (a node met again) gets the line of the key or item that holds it, not
    lines for what it expands to, so the walk is linear in the text whatever the aliases stand for."""
    out = {} if out is None else out
    seen = set() if seen is None else seen
    if id(node) in seen:
        return out
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else "?"  # a collection as a key: never a valid one
            path = f"{prefix}.{name}" if prefix else str(name)
            out[path] = k.start_mark.line + 1
            _key_lines(v, path, out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            path = f"{prefix}[{i}]"
            out[path] = v.start_mark.line + 1
            _key_lines(v, path, out, seen)
    return out


class _Ctx:
    """Carries the file and its line map so every check can raise a precise error."""

    def __init__(self, path: str, lines: dict[str, int]) -> None:
        self.path, self.lines = path, lines

    def error(self, key: str, message: str) -> SuiteError:
        line = self.lines.get(key)
        where = f"{self.path}:{line}" if line else self.path
        return SuiteError(f"{where}: key '{key}': {message}" if key else f"{where}: {message}")

    def message_of(self, exc: SuiteError, key: str) -> str:
        """The message ``error(key, message)`` was built from (the inverse of its format)."""
        return str(exc).split(f"key '{key}': ", 1)[-1]

    def errors(self, problems: list[tuple[str, str]], what: str) -> SuiteError:
        """One error for several ``(key, message)`` problems, at the first line any of their keys has."""
        if len(problems) == 1:
            return self.error(*problems[0])
        lines = [self.lines[k] for k, _ in problems if self.lines.get(k)]
        where = f"{self.path}:{min(lines)}" if lines else self.path
        return SuiteError(f"{where}: {len(problems)} {what}: " + "; ".join(f"key '{k}': {m}" for k, m in problems))

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
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SuiteError(f"{path}: suite file not found") from None
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start:exc.start + 1].hex() if isinstance(exc.object, bytes) else "?"
        line = exc.object[:exc.start].count(b"\n") + 1 if isinstance(exc.object, bytes) else None
        where = f"{path}:{line}" if line else str(path)
        raise SuiteError(f"{where}: not UTF-8 text (byte 0x{byte} at offset {exc.start}); save the suite file "
                         "as UTF-8") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read suite file: {exc.strerror or exc}") from None
    try:
        # composed once, checked against alias bombs and recursion (yaml_safe), then constructed
        node = yaml_safe.compose(text)
        lines = _key_lines(node) if node is not None else {}
        raw = yaml_safe.construct(node)
    except yaml.YAMLError as exc:
        # the context mark points at where the broken construct starts (the line a user must fix)
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        kind = "refused YAML" if isinstance(exc, yaml_safe.YAMLLimitError) else "malformed YAML"
        raise SuiteError(f"{where}: {kind}: {problem}") from None
    ctx = _Ctx(str(path), lines)
    if not isinstance(raw, dict):
        raise ctx.error("", "a suite file must be a YAML mapping")
    if "_forced" in raw:  # the internal key --set fills; never from a file
        raise ctx.error("_forced", f"unknown key{did_you_mean('_forced', list(TOP_KEYS))}")
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
            value = yaml_safe.safe_load(text)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise SuiteError(f"--set {item!r}: value is not valid YAML: {problem}") from None
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
    """Every bad training setting of the mapping in one error (a user fixing a suite should not have to run
    validate once per typo)."""
    ctx.expect(key, train, dict, "a mapping of training settings")
    problems: list[tuple[str, str]] = []
    for k, v in train.items():
        path = f"{key}.{k}"
        if k not in TRAIN_KEYS:
            problems.append((path, f"unknown key{did_you_mean(str(k), list(TRAIN_KEYS))}"))
            continue
        try:
            _check_train_value(ctx, path, k, v)
        except SuiteError as exc:
            problems.append((path, ctx.message_of(exc, path)))
    if problems:
        raise ctx.errors(problems, "bad training settings")
    return dict(train)


def _check_train_value(ctx: _Ctx, path: str, k: str, v: Any) -> None:
    typ = TRAIN_KEYS[k]
    if k in TRAIN_CHOICES:
        ctx.expect(path, v, str, f"one of {', '.join(TRAIN_CHOICES[k])}")
        if v not in TRAIN_CHOICES[k]:
            raise ctx.error(path, f"must be one of {', '.join(TRAIN_CHOICES[k])}, got {v!r}")
        return
    if "bool" in str(typ):
        ctx.expect(path, v, bool, "true or false")
    elif "float" in str(typ):
        ctx.expect(path, v, (int, float), "a number")
    elif "None" in str(typ):
        if v is not None:
            ctx.expect(path, v, int, "an integer or null")
    else:
        ctx.expect(path, v, int, "an integer")
    if isinstance(v, float) and not math.isfinite(v):
        raise ctx.error(path, f"must be a finite number, got {v}")
    minimum = TRAIN_MINIMUMS.get(k)
    if minimum is not None and v is not None and v < minimum:
        raise ctx.error(path, f"must be at least {minimum}{' or null' if 'None' in str(typ) else ''}, got {v}")


def parse_suite(raw: dict[str, Any], ctx: _Ctx) -> Suite:
    raw = dict(raw)
    forced = raw.pop("_forced", {})
    ctx.known_keys("", raw, TOP_KEYS)
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ctx.error("schema_version", f"must be {SCHEMA_VERSION}, got {version!r}")
    name = ctx.expect("name", raw.get("name"), str, "a string suite name")
    try:
        check_slug(name, "a suite name")
    except InvalidName as exc:
        raise ctx.error("name", str(exc)) from None
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
        if not 0 <= s < MAX_SEED:
            raise ctx.error(f"seeds[{i}]", f"must be in 0 .. 2**32 - 1 (numpy's seed range), got {s}")

    defaults_raw = raw.get("defaults") or {}
    ctx.expect("defaults", defaults_raw, dict, "a mapping")
    ctx.known_keys("defaults", defaults_raw, DEFAULT_KEYS)
    defaults: dict[str, Any] = {
        k.key: _component(ctx, f"defaults.{k.key}", defaults_raw.get(k.key, k.default), allow_none=k.optional)
        for k in AXES
    }
    defaults["train"] = _check_train(ctx, "defaults.train", defaults_raw.get("train") or {})

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

    sig_raw = dict(raw.get("significance") or {})
    ctx.expect("significance", sig_raw, dict, "a mapping")
    ctx.known_keys("significance", sig_raw, SIGNIFICANCE_KEYS)
    compare = _patterns(ctx, "significance.compare", sig_raw.pop("compare", None) or [])
    sig = Significance(**sig_raw, compare=compare)
    if sig.test not in TESTS:
        raise ctx.error("significance.test", f"must be one of {', '.join(TESTS)}, got {sig.test!r}")
    if sig.correction not in CORRECTIONS:
        raise ctx.error("significance.correction", f"must be one of {', '.join(CORRECTIONS)}, got {sig.correction!r}")
    ctx.expect("significance.alpha", sig.alpha, (int, float), "a number")
    if not 0 < sig.alpha < 1:
        raise ctx.error("significance.alpha", f"must be between 0 and 1, got {sig.alpha}")

    rel_raw = dict(raw.get("rel_impr") or {})
    ctx.expect("rel_impr", rel_raw, dict, "a mapping")
    ctx.known_keys("rel_impr", rel_raw, REL_IMPR_KEYS)
    rel = RelImpr(mode=rel_raw.get("mode", "vs_baseline"),
                  proposed=_pattern(ctx, "rel_impr.proposed", rel_raw.get("proposed") or {}))
    if rel.mode not in REL_IMPR_MODES:
        raise ctx.error("rel_impr.mode", f"must be one of {', '.join(REL_IMPR_MODES)}, got {rel.mode!r}")
    if rel.mode == "proposed_over_row" and not rel.proposed:
        raise ctx.error("rel_impr.proposed", "mode proposed_over_row needs the proposed config's labels, "
                                             "e.g. {method: ClickPrompt}")

    executor = _component(ctx, "executor", raw.get("executor", kind_of("executors").default))
    store = raw.get("store")
    if store is not None:
        ctx.expect("store", store, str, "a directory path")
    description = raw.get("description", "")
    ctx.expect("description", description, str, "a string")

    suite = Suite(name=name, path=ctx.path, analysis=analysis, datasets=tuple(datasets), seeds=tuple(seeds),
                  defaults=defaults, grid=grid, variants=variants, exclude=tuple(exclude_raw),
                  baseline=_pattern(ctx, "baseline", baseline), buckets=Buckets(**buckets_raw),
                  significance=sig, rel_impr=rel, executor=ComponentRef(executor.pop("name"), executor),
                  description=description, store=store, forced=forced)
    specs = expand(suite)
    if not specs:
        raise ctx.error("exclude" if suite.exclude else "grid", "the suite expands to zero runs")
    _check_train_combinations(specs, ctx)
    check_comparisons(suite, specs, ctx)
    return suite


def _check_train_combinations(specs: list[RunSpec], ctx: _Ctx) -> None:
    """Each run's ``train:`` as a whole (keys that exclude each other, e.g. ``sparse_embeddings`` with
    ``weight_decay``), once per distinct setting, so the error comes at validate, not from the run."""
    seen: set[str] = set()
    for spec in specs:
        key = repr(sorted(spec.train.items()))
        if key in seen:
            continue
        seen.add(key)
        try:
            TrainConfig(**spec.train)
        except ValueError as exc:
            where = ", ".join(f"{k} {v}" for k, v in spec.labels.items() if k != "seed")
            raise ctx.error("train", f"{exc} (run: {where})") from None


def _pattern(ctx: _Ctx, key: str, value: Any) -> dict[str, str]:
    """A label pattern ``{axis: value}`` with its values normalised like run labels (null = "none")."""
    ctx.expect(key, value, dict, "a mapping of label → value, e.g. {ctr: dnn}")
    return {str(k): _label(v) for k, v in value.items()}


def _patterns(ctx: _Ctx, key: str, value: Any) -> tuple[dict[str, str], ...]:
    if isinstance(value, dict):
        value = [value]
    ctx.expect(key, value, list, "a list of label mappings, e.g. [{method: ClickPrompt}]")
    return tuple(_pattern(ctx, f"{key}[{i}]", v) for i, v in enumerate(value))


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
    if head not in DEFAULT_KEYS:
        raise ctx.error(key, f"unknown axis '{axis}'{did_you_mean(head, list(DEFAULT_KEYS))}; "
                             f"axes are {', '.join(DEFAULT_KEYS[:-1])}, train.<key>, or <component>.<config key>")
    if head == "train" and "." in axis:
        sub = axis.split(".", 1)[1]
        if sub not in TRAIN_KEYS:
            raise ctx.error(key, f"unknown train key '{sub}'{did_you_mean(sub, list(TRAIN_KEYS))}")


# -- expansion ----------------------------------------------------------------------------------------

def _label(value: Any) -> str:
    """A run's label for an axis value; every spelling of "no component" (null, None, "none") is "none"."""
    if isinstance(value, dict):
        value = value.get("label") or value.get("name")
    if value is None or (isinstance(value, str) and value.strip().lower() in NONE_LABELS):
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
    return all(_label(labels.get(str(k))) == _label(v) for k, v in pattern.items())


def expand(suite: Suite) -> list[RunSpec]:
    """datasets × variants × grid × seeds, minus ``exclude``; deterministic order (``Suite.runs``, cached)."""
    return list(suite.runs)


def _expand(suite: Suite) -> list[RunSpec]:
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
                    components = {k.key: None if resolved[k.key] is None else _ref(resolved[k.key]) for k in AXES}
                    specs.append(RunSpec(
                        suite=suite.name,
                        dataset=dataset,
                        **components,
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


def matches(labels: dict[str, str], pattern: dict[str, Any]) -> bool:
    """Whether a run's labels agree with a label pattern (``exclude``, ``baseline``, ``compare`` entries)."""
    return _matches(labels, pattern)


ConfigKey = tuple[tuple[str, str], ...]


def partner(key: ConfigKey, candidates: list[ConfigKey]) -> ConfigKey | None:
    """The one candidate that ``key`` is paired with: the only candidate, or (when there are several, e.g. one
    baseline per backbone) the one sharing ``key``'s values on every axis along which the candidates differ.
    None when no candidate, or more than one, qualifies."""
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    varying = {k for c in candidates for k, _ in c if len({dict(x).get(k) for x in candidates}) > 1}
    labels = dict(key)
    hits = [c for c in candidates if all(_label(dict(c).get(k)) == _label(labels.get(k)) for k in varying)]
    return hits[0] if len(hits) == 1 else None


def baseline_pairs(suite: Suite, configs: list[ConfigKey], tested_only: bool = True) -> dict[ConfigKey, ConfigKey]:
    """Each compared config and the baseline config it is compared with (see `partner`: with one baseline every
    config is compared with it; with per-row baselines such as ``{method: backbone alone}`` in a backbone × PLM
    grid, with the baseline of its own backbone). With ``tested_only``, only the configs that
    ``significance.compare`` selects (all when it is empty). Raises `SuiteError` when the baseline matches no
    config or a compared config has no baseline or several, so a board never silently tests nothing.
    """
    if not suite.baseline or len(configs) < 2:
        return {}  # one config (e.g. a --set narrowed the grid): nothing to compare, nothing to get wrong
    bases = [c for c in configs if is_baseline(suite, dict(c))]
    if not bases:
        raise SuiteError(f"{suite.path}: key 'baseline': {_fmt(suite.baseline)} matches no config of suite "
                         f"'{suite.name}' (labels are e.g. {_fmt(dict(configs[0])) if configs else '{}'})")
    pairs: dict[ConfigKey, ConfigKey] = {}
    compare = suite.significance.compare if tested_only else ()
    for key in configs:
        if key in bases or (compare and not any(_matches(dict(key), p) for p in compare)):
            continue
        base = partner(key, bases)
        if base is None:
            raise SuiteError(f"{suite.path}: key 'baseline': config {_fmt(dict(key))} of suite '{suite.name}' "
                             f"matches no single baseline of {len(bases)} ({_fmt(suite.baseline)}); make the "
                             "baseline labels pick one config per row")
        pairs[key] = base
    return pairs


def _fmt(labels: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"


def check_comparisons(suite: Suite, specs: list[RunSpec], ctx: _Ctx | None = None) -> None:
    """What can be known about a suite's comparisons before anything runs: the baseline matches a config, every
    ``compare`` and ``rel_impr.proposed`` pattern matches one, and at least one comparison is tested."""
    error = ctx.error if ctx is not None else (lambda key, msg: SuiteError(f"{suite.path}: key '{key}': {msg}"))
    configs = list(dict.fromkeys(s.config_key() for s in specs))
    for i, pattern in enumerate(suite.significance.compare):
        if not any(_matches(dict(c), pattern) for c in configs):
            raise error(f"significance.compare[{i}]", f"{_fmt(pattern)} matches no config of suite '{suite.name}'")
    if suite.rel_impr.proposed and not any(_matches(dict(c), suite.rel_impr.proposed) for c in configs):
        raise error("rel_impr.proposed", f"{_fmt(suite.rel_impr.proposed)} matches no config of suite "
                                         f"'{suite.name}'")
    if suite.significance.compare and not suite.baseline:
        raise error("significance.compare", "needs a baseline to compare with")
    if not suite.baseline:
        return
    try:
        pairs = baseline_pairs(suite, configs)
    except SuiteError as exc:
        raise error("baseline", str(exc).split("key 'baseline': ", 1)[-1]) from None
    if not pairs and len(configs) > 1:
        raise error("baseline", f"suite '{suite.name}' declares a baseline but no config is compared with it")

