from __future__ import annotations

from .cold import COLD_SAMPLERS, ColdDiffusionScheduler
from .cold_inferer import ColdDiffusionInferer
from .gaussian_inferer import GaussianMaskInferer
from .mask_inferer import DiffusionLossOutput, MaskDiffusionInferer
from .schedulers import AlignedDDIMScheduler, gaussian_scheduler, med_ddpm_cosine_schedule, synthesis_scheduler
from .synthesis_inferer import ConditionalSynthesisInferer
from .tiling import blend_weights, tile_size, tiled_prediction

__all__ = [
    "COLD_SAMPLERS",
    "ColdDiffusionScheduler",
    "ColdDiffusionInferer",
    "GaussianMaskInferer",
    "AlignedDDIMScheduler",
    "gaussian_scheduler",
    "DiffusionLossOutput",
    "MaskDiffusionInferer",
    "med_ddpm_cosine_schedule",
    "synthesis_scheduler",
    "ConditionalSynthesisInferer",
    "blend_weights",
    "tile_size",
    "tiled_prediction",
]
