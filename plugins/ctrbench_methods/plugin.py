"""The `ctr` method: train the chosen CTR backbone alone — the N/A column of every compat table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench.protocols import MethodNeeds

if TYPE_CHECKING:
    from ctrbench.context import RunContext
    from ctrbench.results import Predictions


class CTRMethod:
    """Backbone alone, trained with the shared trainer on binary cross-entropy."""

    def run(self, ctx: RunContext) -> Predictions:
        from ctrbench.context import predictions_of  # torch: imported when a run starts, not at registration

        model = ctx.build_ctr()
        report = ctx.trainer.fit(model, ctx.data)
        preds = predictions_of(ctx, model, report.train_seconds, report.epochs_run)
        preds.extra["best_epoch"] = float(report.best_epoch)
        return preds


@hookimpl
def ctrbench_register_methods(register: Register) -> None:
    register("ctr", CTRMethod, summary="the CTR backbone alone (ID features only)", needs=MethodNeeds(ctr=True))
