"""The training engine every method uses: phases of objectives over sources, one loop (see `loop.py`)."""

from ctrbench.engine.loop import Engine, NullReporter, Phase, PhaseReport, Reporter, seed_everything
from ctrbench.engine.monitor import ValidationAUC
from ctrbench.engine.regularizers import l2_regularizer
from ctrbench.engine.schedule import SCHEDULES, lr_factor, warmup_steps
from ctrbench.engine.sources import DeviceData, IndexSource, RowSource, Source

__all__ = ["SCHEDULES", "DeviceData", "Engine", "IndexSource", "NullReporter", "Phase", "PhaseReport", "Reporter",
           "RowSource", "Source", "ValidationAUC", "l2_regularizer", "lr_factor", "seed_everything",
           "warmup_steps"]
