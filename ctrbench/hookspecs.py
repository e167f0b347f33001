"""The whole extension contract of ctrbench, in one file.

A plugin is any importable module listed under the ``ctrbench`` entry-point group that implements some of
these hooks (decorated with ``ctrbench.hookimpl``). Built-in components under ``plugins/`` are registered
exactly the same way, so every run exercises the third-party path.

Registration hooks receive a ``register`` callable instead of returning lists: one idiom for every
component kind, and the registry learns which plugin each name came from (for duplicate-name errors
and provenance). ``register(name, factory, *, summary="", paper="", **metadata)``.
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

    ``factory(**config) -> DatasetPlugin``: an object with ``load(cache_dir) -> CTRData`` and a
    ``fingerprint()`` that changes whenever the raw inputs or the preprocessing config change.
    """


@hookspec
def ctrbench_register_ctr_backbones(register: Register) -> None:
    """Register ID-based CTR backbones.

    ``factory(fields, *, embed_dim, num_extra_fields=0, **config) -> CTRBackbone`` (see
    ``ctrbench.models.base``). Config keys are the factory's keyword arguments; an unknown key is an error.
    """


@hookspec
def ctrbench_register_plms(register: Register) -> None:
    """Register pretrained language model backbones (masked or causal LM families).

    ``factory(**config) -> object`` with the family's interface (``encode``/``mlm_logits`` or answer-token
    logits). Called lazily: registering a PLM must not load its weights.
    """


@hookspec
def ctrbench_register_methods(register: Register) -> None:
    """Register fusion methods.

    ``factory(**config) -> Method``, where ``Method.run(ctx: RunContext) -> Predictions``. A method owns how
    the CTR backbone and the PLM are combined; the trainer, data and caching come from the context.
    """


@hookspec
def ctrbench_register_executors(register: Register) -> None:
    """Register executors that run a list of RunSpecs (local, multi-GPU, cluster).

    ``factory(**config) -> Executor`` with ``execute(specs, run_one) -> Iterator[RunResult]``. Every
    executor calls the same ``run_one`` and writes to the same store, so any executor can resume a suite.
    """


@hookspec
def ctrbench_run_finished(spec: Any, result: Any) -> None:
    """Called after each run is stored (loggers, trackers). ``result`` is a ``RunResult``.

    Exceptions raised here are logged and ignored: a broken tracker must not lose a finished result.
    """
