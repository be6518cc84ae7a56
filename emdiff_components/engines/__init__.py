from __future__ import annotations

from .allocator import keep_freed_memory
from .blockwise import predict_blockwise, predict_volume_file, slice_intensity_range
from .bundle_config import ablation_tag, default_bundle_root, sampling_tile_size, train_missing_model
from .checkpoints import CheckpointError, ResumableCheckpoint, atomic_save, load_network_weights
from .distributed import distributed_loader, process_rank
from .ema import DelayedEMA
from .export import DENOISER_INPUTS, denoiser_example_inputs, export_network, verify_denoiser_in_out
from .figures import instances_to_rgb, label_to_rgb, save_panel_figure
from .handlers import SegmentationFigure, SegmentationWriter
from .remodel import remodel_volumes
from .run_logging import log_to_file
from .segment import IntensityScaledPredictor, fid_metrics, segment_volumes
from .training import DiffusionTrainingStep

__all__ = [
    "keep_freed_memory",
    "ablation_tag",
    "default_bundle_root",
    "train_missing_model",
    "sampling_tile_size",
    "distributed_loader",
    "process_rank",
    "CheckpointError",
    "ResumableCheckpoint",
    "atomic_save",
    "DelayedEMA",
    "DENOISER_INPUTS",
    "denoiser_example_inputs",
    "export_network",
    "verify_denoiser_in_out",
    "load_network_weights",
    "label_to_rgb",
    "instances_to_rgb",
    "save_panel_figure",
    "SegmentationFigure",
    "SegmentationWriter",
    "remodel_volumes",
    "log_to_file",
    "DiffusionTrainingStep",
    "slice_intensity_range",
    "predict_blockwise",
    "predict_volume_file",
    "IntensityScaledPredictor",
    "segment_volumes",
    "fid_metrics",
]

from .population import compose_population

__all__ += ["compose_population"]
from .cascade import (
    cell_fid,
    cell_masks_from_samples,
    compose_populations,
    lift_cell_masks,
    load_mesh_stacks,
    population_figure,
    sample_cell_masks,
    single_cell_datalist,
    texture_cells,
    write_populations,
)

__all__ += [
    "cell_fid",
    "cell_masks_from_samples",
    "compose_populations",
    "lift_cell_masks",
    "load_mesh_stacks",
    "population_figure",
    "sample_cell_masks",
    "single_cell_datalist",
    "texture_cells",
    "write_populations",
]
from .cell_segmentation import cell_frames_datalist, cell_segmentation_datalist, segment_cells

__all__ += ["cell_frames_datalist", "cell_segmentation_datalist", "segment_cells"]
from .progress import TrainingProgress

__all__ += ["TrainingProgress"]
