from __future__ import annotations

from .cold import COLD_SAMPLERS, ColdDiffusionScheduler
from .cold_inferer import ColdDiffusionInferer
from .gaussian_inferer import GaussianMaskInferer
from .mask_inferer import MaskDiffusionInferer
from .parameterization import PREDICTION_TYPES, check_prediction_type, split_prediction, training_target
from .sampling import DiffusionScheduler, reverse_diffusion
from .schedulers import AlignedDDIMScheduler, gaussian_scheduler, med_ddpm_cosine_schedule, synthesis_scheduler
from .synthesis_inferer import ConditionalSynthesisInferer
from .tiled_inferer import DiffusionLossOutput, TiledDiffusionInferer
from .tiling import blend_weights, network_stride, tile_size, tiled_prediction

__all__ = [
    "COLD_SAMPLERS",
    "ColdDiffusionScheduler",
    "ColdDiffusionInferer",
    "GaussianMaskInferer",
    "MaskDiffusionInferer",
    "PREDICTION_TYPES",
    "check_prediction_type",
    "split_prediction",
    "training_target",
    "DiffusionScheduler",
    "reverse_diffusion",
    "AlignedDDIMScheduler",
    "gaussian_scheduler",
    "med_ddpm_cosine_schedule",
    "synthesis_scheduler",
    "ConditionalSynthesisInferer",
    "DiffusionLossOutput",
    "TiledDiffusionInferer",
    "blend_weights",
    "network_stride",
    "tile_size",
    "tiled_prediction",
]
from .slice_noise import SliceConsistentNoise, slice_consistent_noise

__all__ += ["SliceConsistentNoise", "slice_consistent_noise"]
from .mask_sampler import mask_scheduler, sample_masks
from .texture_inferer import ControlNetDenoiser, MaskConditionedTextureInferer, texture_scheduler

__all__ += ["ControlNetDenoiser", "MaskConditionedTextureInferer", "mask_scheduler", "sample_masks", "texture_scheduler"]
from .stable_diffusion import StableDiffusionTextureInferer, load_controlnet_pipeline

__all__ += ["StableDiffusionTextureInferer", "load_controlnet_pipeline"]
