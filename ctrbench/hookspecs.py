"""The whole extension contract of ctrbench, in one file.

A plugin is any importable module listed under the ``ctrbench`` entry-point group that implements some of
these hooks (decorated with ``ctrbench.hookimpl``). Built-in components under ``plugins/`` are registered
exactly the same way, so every run exercises the third-party path.

Registration hooks receive a ``register`` callable instead of returning lists: one idiom for every
component kind, and the registry learns which plugin each name came from (for duplicate-name errors
and provenance). ``register(name, factory, *, summary="", paper="", **metadata)``.

What each factory must build is a protocol in ``ctrbench/protocols.py``; ``ctrbench/kinds.py`` maps each
registration hook to its kind, protocol, conformance check (``ctrbench.testing``) and generated docs page.
Metadata every kind may carry: ``quick_config={...}``, a config that builds (a method: runs) in seconds on a
CPU, used by the conformance kit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "ctrbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def ctrbench_register_datasets(register: Register) -> None:
    """Register dataset plugins.

    ``factory(**config) -> Dataset`` (``ctrbench.protocols.Dataset``): ``load(cache_dir) -> CTRData`` and a
    ``fingerprint()`` that changes whenever the raw inputs or the preprocessing config change. Metadata:
    ``provides=Provides(history=..., item_text=...)`` (checked against methods' needs at validation) and
    ``source=...`` (where the raw files come from; ``protocols.IN_MEMORY`` when none are read).
    """


@hookspec
def ctrbench_register_ctr_backbones(register: Register) -> None:
    """Register ID-based CTR backbones.

    ``factory(fields, *, embed_dim, num_extra_fields=0, **config) -> CTRBackbone`` (the protocol in
    ``ctrbench.protocols``, implemented by subclassing ``ctrbench.models.base.CTRBackbone``). Config keys are the
    factory's keyword arguments; an unknown key is an error. Metadata: ``q=`` (what ``interact`` returns).
    """


@hookspec
def ctrbench_register_plms(register: Register) -> None:
    """Register pretrained language model backbones.

    ``factory(**config) -> PLM`` with the interface of its family, named by the metadata ``family=`` and the
    object's ``family`` attribute: ``masked_lm`` (``protocols.MaskedLM``), ``causal_lm`` (``protocols.CausalLM``)
    or ``seq2seq_lm`` (``protocols.Seq2SeqLM``). Called lazily: registering a PLM must not load its weights.
    """


@hookspec
def ctrbench_register_methods(register: Register) -> None:
    """Register fusion methods.

    ``factory(**config) -> Method``, where ``Method.run(ctx: RunContext) -> Predictions``. A method owns how
    the CTR backbone and the PLM are combined; the trainer, data and caching come from the context. Metadata:
    ``needs=MethodNeeds(plm=(families...), ctr=..., history=..., item_text=...)``, checked by ``ctrbench
    validate`` against every run of a suite before anything runs.
    """


@hookspec
def ctrbench_register_executors(register: Register) -> None:
    """Register executors that run a list of RunSpecs (local, multi-GPU, cluster).

    ``factory(**config) -> Executor`` with ``execute(specs, run_one: RunOne) -> Iterator[RunResult]``. Every
    executor runs specs through ``run_one`` (here) or ``execute_job(run_one.job...)`` (in workers) and writes to
    the same store, so any executor can resume a suite. ``remote = True`` on the class: runs happen elsewhere.
    """


@hookspec
def ctrbench_run_finished(spec: Any, result: Any) -> None:
    """Called after each run is stored (loggers, trackers). ``result`` is a ``RunResult``.

    Exceptions raised here are logged and ignored: a broken tracker must not lose a finished result.
    """
