from __future__ import annotations

from .array import RandMisalignment, RandMissingSection
from .dictionary import RandMisalignmentd, RandMissingSectiond

__all__ = ["RandMisalignment", "RandMisalignmentd", "RandMissingSection", "RandMissingSectiond"]
