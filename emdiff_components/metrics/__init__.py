from __future__ import annotations

from .batch_meta import filename_meta
from .distance import hausdorff_distances
from .segmentation import SegmentationReport, confusion_counts, scores_from_counts

__all__ = ["filename_meta", "hausdorff_distances", "SegmentationReport", "confusion_counts", "scores_from_counts"]
