from __future__ import annotations

from .array import FuseEnsemble, LabelToSignedMask, SignedMaskToLabel
from .dictionary import FuseEnsembled, LabelToSignedMaskd, SignedMaskToLabeld

__all__ = [
    "LabelToSignedMask",
    "SignedMaskToLabel",
    "FuseEnsemble",
    "LabelToSignedMaskd",
    "SignedMaskToLabeld",
    "FuseEnsembled",
]
