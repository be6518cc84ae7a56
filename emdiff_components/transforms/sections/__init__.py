from __future__ import annotations

from .array import KeepSections
from .dictionary import KeepSectionsd

__all__ = ["KeepSections", "KeepSectionsd"]
