from __future__ import annotations

from .array import LoadSlice
from .dictionary import LoadSliced, pixel_spacing_mm

__all__ = ["LoadSlice", "LoadSliced", "pixel_spacing_mm"]
