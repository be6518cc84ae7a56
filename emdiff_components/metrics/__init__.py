from __future__ import annotations

from .distance import hausdorff_distances
from .segmentation import SegmentationReport, confusion_counts, scores_from_counts

__all__ = ["hausdorff_distances", "SegmentationReport", "confusion_counts", "scores_from_counts"]
