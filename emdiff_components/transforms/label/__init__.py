from __future__ import annotations

from .array import LabelToSignedMask, SignedMaskToLabel
from .dictionary import LabelToSignedMaskd, SignedMaskToLabeld

__all__ = ["LabelToSignedMask", "SignedMaskToLabel", "LabelToSignedMaskd", "SignedMaskToLabeld"]
