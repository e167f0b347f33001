"""What the core and the methods rely on of each plugin kind: one protocol per kind, in one file.

``hookspecs.py`` says how a component is registered; this module says what the registered factory must build.
``ctrbench.kinds`` ties the two together (kind → hook, protocol, conformance check, docs page), and
``ctrbench.testing`` checks a component against its protocol. The protocols are structural (``typing.Protocol``):
a plugin implements one by having the members, not by inheriting from anything.

- datasets: `Dataset` (``load(cache_dir) -> CTRData``, ``fingerprint()``), checked by ``check_dataset``;
- ctr: `CTRBackbone` (``embed`` → ``interact`` → ``head``), ``check_ctr_backbone``;
- plm: `PLM` and its family's `MaskedLM`, `CausalLM` or `Seq2SeqLM` (`FAMILIES`), ``check_plm``;
- methods: `Method` (``run(ctx) -> Predictions``) with `MethodNeeds`, ``check_method``;
- executors: `Executor` (``execute(specs, run_one: RunOne)``), ``check_executor``.

Registration metadata that the core reads (``register(name, factory, **metadata)``):

- PLMs: ``family=`` one of `FAMILIES` (``"masked_lm"``, ``"causal_lm"``, ``"seq2seq_lm"``);
- methods: ``needs=MethodNeeds(...)``: the PLM families a method accepts and the data it reads, checked by
  ``ctrbench validate`` against the suite before anything runs;
- datasets: ``provides=Provides(...)``: whether the data has a user history and item texts;
- datasets and PLMs: ``source=``, where raw files or weights come from (`IN_MEMORY` when nothing is read);
- any kind: ``quick_config=``, a config that builds (or, for a method, runs) in seconds on a CPU: the
  conformance tests build each component with it.

This module imports neither torch nor the runner (executor plugins import it before their workers set up
their environment); the types in annotations are imported for type checkers only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ctrbench.errors import PluginError

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from ctrbench.context import RunContext
    from ctrbench.data.types import CTRData, Field
    from ctrbench.models.base import Batch, FieldEmbedding
    from ctrbench.results import Predictions, RunResult
    from ctrbench.runner import RunJob
    from ctrbench.spec import RunSpec
    from ctrbench.store import Store

# The ``source`` metadata of a dataset or PLM that reads no files and needs no network (random test models,
# generated data): the conformance kit builds these with their default config.
IN_MEMORY = "built in memory"


# -- datasets ---------------------------------------------------------------------------------------------

@runtime_checkable
class Dataset(Protocol):
    """What a dataset factory returns: ``factory(**config) -> Dataset``.

    ``load`` is called once per (name, config) in a session; ``fingerprint`` must change whenever the raw
    inputs or the preprocessing config change (``ctrbench.data.cache.cached_dataset`` gives both).
    """

    def load(self, cache_dir: Path) -> CTRData:
        """The preprocessed data, cached under ``cache_dir``; a `DataError` when raw files are missing."""
        ...

    def fingerprint(self) -> str:
        """A hash of the raw inputs and the preprocessing config."""
        ...


@dataclass(frozen=True)
class Provides:
    """What a dataset's data holds beyond ID features, declared in its registration (``provides=``) so that
    ``ctrbench validate`` can refuse a method that needs it before anything runs.

    ``history``: the data has ``sequences["history"]``: ``True``, ``False``, or the name of the config key
    whose value (> 0) switches it on (``"history_length"``). ``item_text``: items have text fields (titles,
    genres) beyond their id.
    """

    history: bool | str = False
    item_text: bool = False

    @classmethod
    def of(cls, value: Any, who: str) -> Provides | None:
        """The declaration from registration metadata (a `Provides` or a mapping), None when undeclared."""
        return _declared(cls, value, who, "provides")

    def has_history(self, config: Mapping[str, Any], factory: Callable[..., Any]) -> bool:
        """Whether data built from ``config`` has a history (a config-key declaration reads the key, or its
        default in ``factory``'s signature)."""
        if isinstance(self.history, bool):
            return self.history
        value = config.get(self.history, _default(factory, self.history))
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


# -- CTR backbones ----------------------------------------------------------------------------------------

@runtime_checkable
class CTRBackbone(Protocol):
    """What a CTR backbone factory returns: ``factory(fields, *, embed_dim, num_extra_fields=0, **config)``.

    ``ctrbench.models.base.CTRBackbone`` is the base class that implements it (shared embedding, head and
    ``forward``); a model subclasses it and writes ``interact``. Shapes: ``E: [B, F(+k), d]``,
    ``q: [B, hidden_dim]``, logit ``[B]``.
    """

    hidden_dim: int
    embed_dim: int
    embedding: FieldEmbedding
    fields: list[Field]

    def embed(self, batch: Batch) -> torch.Tensor: ...

    def interact(self, E: torch.Tensor) -> torch.Tensor: ...

    def head(self, q: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, batch: Batch, extra: torch.Tensor | None = None) -> torch.Tensor: ...


# -- PLMs -------------------------------------------------------------------------------------------------

@runtime_checkable
class PLM(Protocol):
    """What every PLM factory returns (``factory(**config)``, weights loaded on the call, never at
    registration): a ``torch.nn.Module`` that names its `family` and tokenizes text. The family's protocol
    (`MaskedLM`, `CausalLM`, `Seq2SeqLM`) says the rest."""

    family: str
    name: str

    def tokenize(self, texts: Sequence[str], max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)``, both ``int64 [B, T]`` with ``T <= max_length``, on the model's
        device."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


@runtime_checkable
class MaskedLM(PLM, Protocol):
    """``family = "masked_lm"`` (ClickPrompt): an encoder with its MLM head and soft prompts.

    ``prompts`` are ``[B, *prompt_shape(K, prompt_mode)]``: ``[B, num_layers, 2, K, hidden_size]`` key/value
    prefixes per layer (``"layerwise"``) or ``[B, K, hidden_size]`` soft tokens (``"first_layer"``).
    """

    hidden_size: int
    num_layers: int
    vocab_size: int
    pad_token_id: int
    mask_token_id: int
    tokenizer: Any

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompts: torch.Tensor | None = None,
               prompt_mode: str = "layerwise") -> torch.Tensor:
        """Final hidden states of the text positions, ``[B, T, hidden_size]``."""
        ...

    def mlm_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   prompts: torch.Tensor | None = None, prompt_mode: str = "layerwise") -> torch.Tensor:
        """Vocabulary logits ``[B, T, vocab_size]`` from the model's own MLM head."""
        ...

    def mlm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., hidden_size] -> [..., vocab_size]``."""
        ...

    def pooled(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, H] -> [B, H]``."""
        ...

    def prompt_shape(self, num_prompts: int, prompt_mode: str = "layerwise") -> tuple[int, ...]: ...


@runtime_checkable
class YesNoOutput(Protocol):
    """What a Yes/No model returns for a batch of prompts."""

    logits: torch.Tensor  # [B, 2]: (l_no, l_yes), float32
    click: torch.Tensor  # [B, H]: the hidden state the answer is read from (SLLM4CTR's e_L)
    prompt: torch.Tensor  # [B, H]: the prompt's mean hidden state (SLLM4CTR's e_c)

    @property
    def margin(self) -> torch.Tensor:
        """``l_yes - l_no``, ``[B]``: ``p_yes = sigmoid(margin)``."""
        ...


@runtime_checkable
class YesNoLM(PLM, Protocol):
    """What the families that answer a prompt with "Yes" or "No" share (TallRec, SLLM4CTR)."""

    hidden_size: int

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> YesNoOutput: ...

    def add_lora(self, r: int = 8, alpha: int = 16, dropout: float = 0.05, target_modules: Sequence[str] | None = None,
                 seed: int = 0) -> int:
        """LoRA adapters through peft (every base weight frozen, the adapters initialised under ``seed`` so the
        output is unchanged); returns the trainable parameter count."""
        ...

    def trainable_parameters(self) -> list[torch.nn.Parameter]: ...

    def enable_gradient_checkpointing(self) -> None: ...

    def response_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """``[B, R]``: each label's answer token (then EOS when the tokenizer has one): TALLRec's response."""
        ...

    def lm_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_ids: torch.Tensor,
                scope: str = "response") -> tuple[torch.Tensor, YesNoOutput]:
        """Language-modelling cross-entropy on the response (``scope="response"``) or the whole sequence
        (``"full"``, where the family supports it), with the `YesNoOutput` at the answer position."""
        ...


@runtime_checkable
class CausalLM(YesNoLM, Protocol):
    """``family = "causal_lm"``: a decoder; the answer is read at the last position (left padding and left
    truncation, so the question is never cut)."""


@runtime_checkable
class Seq2SeqLM(YesNoLM, Protocol):
    """``family = "seq2seq_lm"`` (T5-style): the encoder reads the prompt; the answer is read at the first
    decoder step."""


@dataclass(frozen=True)
class Family:
    """A PLM family: its ``family`` name, its protocol, and ``tiny``, the registered PLM of that family that
    builds in a second with no files (the conformance kit runs methods on it and loads checkpoints like it)."""

    name: str
    protocol: type
    tiny: str
    summary: str


FAMILIES: tuple[Family, ...] = (
    Family("masked_lm", MaskedLM, "random-bert", "an encoder with its MLM head and soft prompts (ClickPrompt)"),
    Family("causal_lm", CausalLM, "random-llama", "a decoder answering ' Yes'/' No' at the last position"),
    Family("seq2seq_lm", Seq2SeqLM, "random-t5", "an encoder-decoder answering at the first decoder step"),
)


def plm_family(name: str) -> Family:
    """The `Family` named ``name``; a `PluginError` naming the known ones otherwise."""
    for f in FAMILIES:
        if f.name == name:
            return f
    from ctrbench.registry import did_you_mean

    raise PluginError(f"unknown PLM family {name!r}{did_you_mean(str(name), [f.name for f in FAMILIES])}; "
                      f"known: {', '.join(f.name for f in FAMILIES)}")


# -- methods ----------------------------------------------------------------------------------------------

@runtime_checkable
class Method(Protocol):
    """What a method factory returns: ``factory(**config) -> Method``. ``run`` is called once per run; the
    data, the component factories, the trainer and the stage cache come from ``ctx``."""

    def run(self, ctx: RunContext) -> Predictions:
        """Valid and test click probabilities (in split order; NaN on rows ``train.eval_max_samples`` leaves
        unscored), with timing and parameter counts."""
        ...


@dataclass(frozen=True)
class MethodNeeds:
    """What a method needs from a run, declared in its registration (``register(..., needs=MethodNeeds(...))``)
    and checked by ``ctrbench validate`` against every run of a suite before anything runs.

    ``plm``: the PLM families it accepts (``()``: it uses no PLM, and a suite's ``plm:`` is ignored).
    ``ctr``: it builds the run's CTR backbone (``ctr:`` must be set). ``history``: it reads the user history
    (``data.sequences["history"]``). ``item_text``: it reads item texts (titles, genres).
    """

    plm: tuple[str, ...] = ()
    ctr: bool = False
    history: bool = False
    item_text: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "plm", (self.plm,) if isinstance(self.plm, str) else tuple(self.plm))
        for name in self.plm:
            plm_family(name)  # an unknown family is a PluginError naming the known ones

    @classmethod
    def of(cls, value: Any, who: str) -> MethodNeeds | None:
        """The declaration from registration metadata (a `MethodNeeds` or a mapping), None when undeclared."""
        return _declared(cls, value, who, "needs")

    def describe(self) -> str:
        """``"PLM (causal_lm or seq2seq_lm), user history"``; ``"nothing"`` when it needs nothing."""
        parts = [f"PLM ({' or '.join(self.plm)})"] if self.plm else []
        parts += [what for flag, what in ((self.ctr, "CTR backbone"), (self.history, "user history"),
                                          (self.item_text, "item text")) if flag]
        return ", ".join(parts) or "nothing"


# -- executors --------------------------------------------------------------------------------------------

@runtime_checkable
class RunOne(Protocol):
    """What `ctrbench.runner.run_suite` hands an executor: call it to run a spec in this process, or send
    ``job`` to a worker, which calls ``ctrbench.runner.execute_job(job.for_worker(threads, gpus), spec)``.

    ``store`` is the store every run writes (wherever it runs), ``device`` this process's device, and
    ``unshippable_plugins()`` names the plugins registered in this process that a worker cannot import (their
    runs have to stay here).
    """

    @property
    def job(self) -> RunJob: ...

    @property
    def store(self) -> Store: ...

    @property
    def device(self) -> torch.device: ...

    def unshippable_plugins(self) -> list[str]: ...

    def __call__(self, spec: RunSpec) -> RunResult: ...


@runtime_checkable
class Executor(Protocol):
    """What an executor factory returns: ``factory(**config) -> Executor``.

    ``execute`` yields one `RunResult` per spec, in any order, as runs finish: ``run_one(spec)`` here, or
    ``execute_job`` in a worker. It lets ``DataError`` and ``KeyboardInterrupt`` propagate, and reports a run
    whose worker died with ``ctrbench.runner.lost_run``.

    An executor whose runs happen on other machines sets the class attribute ``remote = True`` (read with
    `runs_elsewhere`): ``--device`` is then resolved on those machines, not where ``ctrbench run`` runs.
    """

    def execute(self, specs: list[RunSpec], run_one: RunOne) -> Iterator[RunResult]: ...


def runs_elsewhere(executor: Any) -> bool:
    """An executor's (or executor class's) ``remote`` attribute: False when it has none, a `PluginError` when
    it is not a bool."""
    value = getattr(executor, "remote", False)
    if not isinstance(value, bool):
        name = getattr(executor, "__qualname__", type(executor).__qualname__)
        raise PluginError(f"executor {name}: `remote` must be True or False, got {value!r}")
    return value


# -- helpers ----------------------------------------------------------------------------------------------

def protocol_members(protocol: type) -> list[str]:
    """The attributes and methods a protocol declares (its own and its protocol bases'), sorted."""
    names: set[str] = set()
    for base in protocol.__mro__:
        if base is object or not getattr(base, "_is_protocol", False) or base is Protocol:
            continue
        names.update(getattr(base, "__annotations__", {}))
        names.update(n for n, v in vars(base).items() if callable(v) or isinstance(v, property))
    return sorted(n for n in names if not n.startswith("_") or n == "__call__")


def missing_members(obj: Any, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks (what ``isinstance`` would not say)."""
    return [n for n in protocol_members(protocol) if not hasattr(obj, n)]


def _default(factory: Callable[..., Any], key: str) -> Any:
    try:
        p = inspect.signature(factory).parameters.get(key)
    except (TypeError, ValueError):
        return None
    return None if p is None or p.default is inspect.Parameter.empty else p.default


def _declared(cls: type, value: Any, who: str, key: str) -> Any:
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        known = [f.name for f in fields(cls)]
        unknown = [k for k in value if k not in known]
        if not unknown:
            try:
                return cls(**value)
            except PluginError as exc:
                raise PluginError(f"{who}: {key}: {exc}") from None
        raise PluginError(f"{who}: {key}: unknown key(s) {unknown}; known: {', '.join(known)}")
    raise PluginError(f"{who}: {key} must be a {cls.__name__} or a mapping, got {type(value).__name__}")


__all__ = ["FAMILIES", "IN_MEMORY", "CTRBackbone", "CausalLM", "Dataset", "Executor", "Family", "MaskedLM",
           "Method", "MethodNeeds", "PLM", "Provides", "RunOne", "Seq2SeqLM", "YesNoLM", "YesNoOutput",
           "missing_members", "plm_family", "protocol_members", "runs_elsewhere"]
