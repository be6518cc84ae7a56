from __future__ import annotations

from .array import BinarizeMask, CellClasses, GreyLevelMask
from .dictionary import BinarizeMaskd, CellClassesd, GreyLevelMaskd

__all__ = ["BinarizeMask", "BinarizeMaskd", "CellClasses", "CellClassesd", "GreyLevelMask", "GreyLevelMaskd"]
