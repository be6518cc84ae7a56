"""Affinities -> segments (to come): watershed, waterz and mutex-watershed agglomeration, multicut.

Ensemble fusion of sampled masks, which lived here, is a post-transform: :mod:`emdiff_components.transforms.post`
(``fuse_ensemble``, ``staple``, ``FuseEnsemble(d)``).
"""

from __future__ import annotations

__all__: list[str] = []
