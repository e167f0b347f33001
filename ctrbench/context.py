"""What a method sees when it runs: the `RunContext` (its `Method` protocol is in `ctrbench.protocols`)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from ctrbench.atomic import make_dirs, make_temp_dir, publish_directory, stage_lock_path
from ctrbench.cost import parameter_counts
from ctrbench.data.types import CTRData
from ctrbench.models.base import FieldEmbedding
from ctrbench.plugins import Plugins
from ctrbench.results import Predictions
from ctrbench.spec import RunSpec, content_hash
from ctrbench.trainer import Reporter, Trainer

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """Everything one run needs, built by the runner from a `RunSpec`.

    Methods get components through factories (``build_ctr``/``build_plm``) rather than instances so they
    can build several (e.g. a fresh CTR model for a finetune after a pretraining stage).
    """

    spec: RunSpec
    data: CTRData
    plugins: Plugins
    trainer: Trainer
    device: torch.device
    reporter: Reporter
    stage_root: Path

    @property
    def seed(self) -> int:
        return self.spec.seed

    def build_ctr(self, num_extra_fields: int = 0, **overrides: Any) -> torch.nn.Module:
        if self.spec.ctr is None:
            raise ValueError(f"run {self.spec.run_id}: method '{self.spec.method.name}' needs a CTR backbone (ctr:)")
        entry = self.plugins.registry("ctr").get(self.spec.ctr.name)
        config = {"embed_dim": 16, **self.spec.ctr.config, **overrides}
        torch.manual_seed(self.spec.seed)
        fields = [*self.data.fields, *self.data.sequence_fields]
        model = entry.create(fields=fields, num_extra_fields=num_extra_fields, **config)
        init = self.trainer.config.embedding_init
        if init != "default":  # train.embedding_init: the same init for every arm of a comparison
            for module in model.modules():
                if isinstance(module, FieldEmbedding):
                    module.reinit(init)
        return model

    def build_plm(self, **overrides: Any) -> Any:
        if self.spec.plm is None:
            raise ValueError(f"run {self.spec.run_id}: method '{self.spec.method.name}' needs a PLM (plm:)")
        entry = self.plugins.registry("plm").get(self.spec.plm.name)
        return entry.create(**{**self.spec.plm.config, **overrides})

    def stage(self, name: str, config: dict[str, Any], fn: Callable[[Path], None]) -> Path:
        """Run ``fn(out_dir)`` once per distinct (name, config) and return its artifact directory.

        Pretraining stages are keyed by everything they depend on (pass it all in ``config``: data
        fingerprint, backbone config, PLM, seed…), so a grid of finetunes reuses one pretraining run. The
        directory appears atomically: an interrupted stage leaves nothing that looks finished. Processes
        sharing the store (the workers of a multi-process executor) take a file lock per stage, so a stage
        many runs need is computed by the first of them while the others wait, then reused.
        """
        if self.trainer is not None and self.device.type == "cpu" and self.trainer.engine.amp_dtype() is not None:
            config = {**config, "cpu_amp": True}  # bf16 stages are other numbers; float32 keys stay as they were
        key = f"{name}-{content_hash(config)}"
        final = self.stage_root / key
        if (final / ".done").exists():
            log.info("stage %s: reusing %s", name, final)
            return final
        make_dirs(self.stage_root)
        lock = FileLock(stage_lock_path(self.stage_root, key))
        locked = _acquire(lock, name, final)
        try:
            if (final / ".done").exists():  # finished by the process that held the lock
                log.info("stage %s: reusing %s", name, final)
                return final
            if locked:  # nobody else computes this stage now: temp folders of a killed attempt are leftovers
                for old in self.stage_root.glob(f".{key}.*"):
                    if old.is_dir():
                        log.info("stage %s: removing %s, left by an interrupted attempt", name, old)
                        shutil.rmtree(old, ignore_errors=True)
            tmp = make_temp_dir(self.stage_root, f".{key}.")
            try:
                fn(tmp)
                (tmp / ".done").write_text(name + "\n")
                if not publish_directory(tmp, final, complete=lambda d: (d / ".done").exists()):
                    log.info("stage %s: another process finished it first; using its copy %s", name, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # gone after a rename; the leftovers otherwise
        finally:
            if locked:
                lock.release()
        return final


def _acquire(lock: FileLock, name: str, final: Path) -> bool:
    """Take the stage's lock, waiting for a process that holds it; False where file locks do not work."""
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("stage %s: another process is computing it, waiting for %s", name, final)
            lock.acquire()
        return True
    except (OSError, NotImplementedError) as exc:  # e.g. Lustre without -o flock, NFS mounted with nolock
        log.warning("stage %s: file locks do not work in %s (%s); another process may compute it too",
                    name, final.parent, exc)
        return False


def predictions_of(ctx: RunContext, model: torch.nn.Module, train_seconds: float, epochs: int,
                   forward: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None) -> Predictions:
    """The usual ending of a method: predict valid/test, time inference, count parameters (`ctrbench.cost`)."""
    import time

    t = time.perf_counter()
    test = ctx.trainer.predict(model, ctx.data, "test", forward)
    infer = time.perf_counter() - t
    total, trainable = parameter_counts(model)
    return Predictions(
        valid=ctx.trainer.predict(model, ctx.data, "valid", forward),
        test=test,
        n_params=total,
        train_seconds=train_seconds,
        infer_seconds=infer,
        infer_ms_per_batch=ctx.trainer.time_inference(model, ctx.data, forward=forward),
        epochs=epochs,
        trainable_params=trainable,
    )
