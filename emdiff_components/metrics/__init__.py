from __future__ import annotations

from .batch_meta import filename_meta
from .fid3d import FID3D, fid_3d, volume_features
from .distance import hausdorff_distances
from .seams import seam_score, tile_borders
from .segmentation import SegmentationReport, confusion_counts, scores_from_counts
from .instance import InstanceSegmentationReport, instance_scores

__all__ = [
    "FID3D",
    "fid_3d",
    "volume_features",
    "SegmentationReport",
    "confusion_counts",
    "filename_meta",
    "hausdorff_distances",
    "scores_from_counts",
    "seam_score",
    "tile_borders",
    "InstanceSegmentationReport",
    "instance_scores",
]

from .cells import CellSegmentationReport, cell_scores

__all__ += ["CellSegmentationReport", "cell_scores"]
