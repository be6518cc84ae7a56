from __future__ import annotations

from .array import LoadSlice, LoadVolume
from .dictionary import LoadSliced, LoadVolumed, pixel_spacing_mm

__all__ = ["LoadSlice", "LoadVolume", "LoadSliced", "LoadVolumed", "pixel_spacing_mm"]
