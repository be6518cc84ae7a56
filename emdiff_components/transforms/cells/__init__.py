from __future__ import annotations

from .array import BinarizeMask, GreyLevelMask
from .dictionary import BinarizeMaskd, GreyLevelMaskd

__all__ = ["BinarizeMask", "BinarizeMaskd", "GreyLevelMask", "GreyLevelMaskd"]
