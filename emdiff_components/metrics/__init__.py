from __future__ import annotations

from .segmentation import SegmentationReport, confusion_counts, scores_from_counts

__all__ = ["SegmentationReport", "confusion_counts", "scores_from_counts"]
