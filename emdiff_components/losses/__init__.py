from __future__ import annotations

from .boundary import BoundaryAwareMSELoss, boundary_time_exponent
from .joint import JointSegmentationLoss

__all__ = ["BoundaryAwareMSELoss", "boundary_time_exponent", "JointSegmentationLoss"]
from .affinity import ClassBalancedBCELoss

__all__ += ["ClassBalancedBCELoss"]
