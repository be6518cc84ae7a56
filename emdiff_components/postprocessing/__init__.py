"""Predictions -> instances. Neurons: 2D watershed supervoxels, then waterz, multicut or mutex-watershed agglomeration;
cells: a seeded watershed of three-class probabilities (:func:`cell_instances`).

NeuroDiff (Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation", ISBI 2026,
https://arxiv.org/abs/2601.15779) evaluates its downstream network's affinities this way;
:func:`segment_affinities` runs the whole chain. The libraries (python-elf, waterz, mwatershed) are optional imports.

Ensemble fusion of sampled masks, which lived here, is a post-transform: :mod:`emdiff_components.transforms.post`
(``fuse_ensemble``, ``staple``, ``FuseEnsemble(d)``).
"""

from __future__ import annotations

from .agglomeration import (
    NEAREST_NEIGHBOUR_OFFSETS,
    WATERZ_SCORING,
    agglomerate_multicut,
    agglomerate_waterz,
    mutex_watershed,
    segment_affinities,
)
from .cells import cell_instances
from .watershed import affinity_supervoxels

__all__ = [
    "NEAREST_NEIGHBOUR_OFFSETS",
    "WATERZ_SCORING",
    "affinity_supervoxels",
    "agglomerate_multicut",
    "agglomerate_waterz",
    "cell_instances",
    "mutex_watershed",
    "segment_affinities",
]
