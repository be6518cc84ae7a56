from __future__ import annotations

from .cold import COLD_SAMPLERS, ColdDiffusionScheduler
from .cold_inferer import ColdDiffusionInferer
from .gaussian_inferer import GaussianMaskInferer, gaussian_scheduler
from .mask_inferer import DiffusionLossOutput, MaskDiffusionInferer

__all__ = ["COLD_SAMPLERS", "ColdDiffusionScheduler", "ColdDiffusionInferer", "GaussianMaskInferer", "gaussian_scheduler", "DiffusionLossOutput", "MaskDiffusionInferer"]
