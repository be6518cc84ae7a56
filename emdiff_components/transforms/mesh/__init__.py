from __future__ import annotations

from .array import LiftMask3D, MeshToMaskStack
from .dictionary import LiftMask3Dd, MeshToMaskStackd

__all__ = ["LiftMask3D", "LiftMask3Dd", "MeshToMaskStack", "MeshToMaskStackd"]
