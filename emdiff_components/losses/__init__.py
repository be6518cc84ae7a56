from __future__ import annotations

from .boundary import BoundaryAwareMSELoss, boundary_time_exponent

__all__ = ["BoundaryAwareMSELoss", "boundary_time_exponent"]
