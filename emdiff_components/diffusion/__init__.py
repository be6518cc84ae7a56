from __future__ import annotations

from .cold import COLD_SAMPLERS, ColdDiffusionScheduler
from .cold_inferer import ColdDiffusionInferer, DiffusionLossOutput

__all__ = ["COLD_SAMPLERS", "ColdDiffusionScheduler", "ColdDiffusionInferer", "DiffusionLossOutput"]
