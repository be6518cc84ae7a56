from __future__ import annotations

from .array import LoadSlice
from .dictionary import LoadSliced

__all__ = ["LoadSlice", "LoadSliced"]
