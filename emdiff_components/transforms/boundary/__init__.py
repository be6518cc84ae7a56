from __future__ import annotations

from .array import BoundaryDistanceWeight
from .dictionary import BoundaryDistanceWeightd

__all__ = ["BoundaryDistanceWeight", "BoundaryDistanceWeightd"]
