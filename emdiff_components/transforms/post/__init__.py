"""Post-transforms of sampled segmentations: ensemble fusion (mean, majority vote, STAPLE) with an uncertainty map."""

from __future__ import annotations

from .array import FuseEnsemble
from .dictionary import FuseEnsembled
from .ensemble import fuse_ensemble, staple

__all__ = ["fuse_ensemble", "staple", "FuseEnsemble", "FuseEnsembled"]
