from __future__ import annotations

from .ensemble import fuse_ensemble, staple

__all__ = ["fuse_ensemble", "staple"]
