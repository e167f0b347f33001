"""Dataset config types: the checker lives in ``ctrbench.configtypes`` (shared by every component kind); this
module keeps the names the dataset plugin and older imports use."""

from __future__ import annotations

from ctrbench.configtypes import MAX_SEED, check_config_types, describe, typed

__all__ = ["MAX_SEED", "check_config_types", "describe", "typed"]
