from __future__ import annotations

from .array import LabelToAffinity
from .dictionary import LabelToAffinityd

__all__ = ["LabelToAffinity", "LabelToAffinityd"]
