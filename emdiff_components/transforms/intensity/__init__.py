from __future__ import annotations

from .array import ScaleSliceIntensity
from .dictionary import ScaleSliceIntensityd

__all__ = ["ScaleSliceIntensity", "ScaleSliceIntensityd"]
