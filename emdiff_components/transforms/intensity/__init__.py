from __future__ import annotations

from .array import ScaleSliceIntensity
from .dictionary import ScaleSliceIntensityd
from .window import ScaleIntensityWindow, ScaleIntensityWindowd

__all__ = ["ScaleSliceIntensity", "ScaleSliceIntensityd", "ScaleIntensityWindow", "ScaleIntensityWindowd"]
