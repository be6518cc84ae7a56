from __future__ import annotations

from .batch_meta import filename_meta
from .distance import hausdorff_distances
from .seams import seam_score, tile_borders
from .segmentation import SegmentationReport, confusion_counts, scores_from_counts

__all__ = [
    "SegmentationReport",
    "confusion_counts",
    "filename_meta",
    "hausdorff_distances",
    "scores_from_counts",
    "seam_score",
    "tile_borders",
]
