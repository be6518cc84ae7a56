"""Supervoxels from predicted nearest-neighbour affinities: a 2D distance-transform watershed per z-section.

NeuroDiff (Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation", ISBI 2026,
https://arxiv.org/abs/2601.15779) segments neurons from the 3 affinities of its downstream network by first cutting
every section into fragments (supervoxels) and then agglomerating them (:mod:`.agglomeration`). The fragments come from
elf's distance-transform watershed, run section by section on an in-plane boundary map, with the paper's threshold 0.25
and seed smoothing 2.0 (the public ``segmentation_scripts/evaluate.py``, ``build_watershed``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.utils import OptionalImportError, optional_import
from skimage.segmentation import relabel_sequential

elf_ws, has_elf = optional_import("elf.segmentation.watershed")

__all__ = ["affinity_supervoxels"]

# pip commands named in the error when an optional package is missing (versions as in setup.cfg)
PIP_COMMANDS = {
    "python-elf": "pip install python-elf==0.9.2",
    "waterz": "pip install waterz==0.10.1",
    "mwatershed": "pip install mwatershed==0.5.4",
}


def require(available: bool, package: str, caller: str) -> None:
    """Raise ``OptionalImportError`` naming ``package`` and its pip command when it is not importable."""
    if not available:
        raise OptionalImportError(f"{caller} needs the optional package {package!r}: {PIP_COMMANDS[package]}")


def check_affinities(affinities: Any, caller: str, channels: int | None = 3) -> np.ndarray:
    """``float32`` numpy copy of ``(C, Z, Y, X)`` affinities in ``[0, 1]``; ``ValueError`` naming ``caller`` if not.

    Args:
        affinities: numpy array or tensor.
        caller: name used in the error messages.
        channels: required channel count; ``None`` accepts any count of at least 3.
    """
    if isinstance(affinities, torch.Tensor):
        affinities = affinities.detach().cpu().numpy()
    a = np.asarray(affinities)
    if a.ndim != 4:
        raise ValueError(f"{caller}: affinities must be 4D (C, Z, Y, X), got shape {a.shape}.")
    if channels is not None and a.shape[0] != channels:
        raise ValueError(
            f"{caller}: affinities must have {channels} channels (z, y, x nearest-neighbour affinities), "
            f"got {a.shape[0]} channels in shape {a.shape}."
        )
    if channels is None and a.shape[0] < 3:
        raise ValueError(f"{caller}: affinities need at least 3 channels, got {a.shape[0]} in shape {a.shape}.")
    if not np.issubdtype(a.dtype, np.floating) and a.dtype != np.bool_ and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{caller}: affinities must be numeric, got dtype {a.dtype}.")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{caller}: affinities contain NaN or infinite values.")
    if a.size and (a.min() < 0 or a.max() > 1):
        raise ValueError(f"{caller}: affinities must lie in [0, 1], got values in [{a.min():g}, {a.max():g}].")
    return np.ascontiguousarray(a)


BOUNDARY_MAPS = ("previous", "symmetric")


def boundary_map(affinities: np.ndarray, boundary: str = "previous") -> np.ndarray:
    """In-plane boundary probability of ``(3, Z, Y, X)`` affinities, ``(Z, Y, X)``; the z affinity is left out.

    ``"previous"`` (the public code's ``build_watershed``): ``max(1 - a_y, 1 - a_x)``, the links of a voxel to its
    previous neighbours only, so the ridge of a face lies on the first voxel AFTER it. ``"symmetric"``: the maximum
    over all four in-plane links of the voxel (to the previous and the next neighbour), so the ridge is two voxels
    wide, one on each side of the face.
    """
    cut = 1.0 - affinities[1:3]
    out = cut.max(0)
    if boundary == "symmetric":
        out[:, :-1, :] = np.maximum(out[:, :-1, :], cut[0, :, 1:, :])  # link to the next voxel in y
        out[:, :, :-1] = np.maximum(out[:, :, :-1], cut[1, :, :, 1:])  # link to the next voxel in x
    return out


def affinity_supervoxels(
    affinities: np.ndarray | torch.Tensor,
    threshold: float = 0.25,
    sigma_seeds: float = 2.0,
    sigma_weights: float = 2.0,
    min_size: int = 100,
    alpha: float = 0.9,
    boundary: str = "previous",
    n_threads: int | None = None,
) -> np.ndarray:
    """Fragments (supervoxels) of a volume from its 3 nearest-neighbour affinities, one 2D watershed per z-section.

    NeuroDiff (Jiang et al., https://arxiv.org/abs/2601.15779) post-processing, first step: for each section the
    in-plane boundary map (default ``max(1 - a_y, 1 - a_x)``) is thresholded at ``threshold``, the distance
    transform of the non-boundary pixels is smoothed (``sigma_seeds``) and its local maxima seed a watershed on
    ``alpha * smoothed boundary + (1 - alpha) * inverted distance``; fragments smaller than ``min_size`` pixels are
    flooded by their neighbours (elf's ``distance_transform_watershed`` via ``stacked_watershed``; the public
    ``segmentation_scripts/evaluate.py`` uses the same function with the same defaults).

    The public boundary map puts the ridge of a one-voxel face (two touching neurons) on the first voxel after the face,
    so the watershed may hand voxels of that column to the fragment on the other side; such a fragment straddles two
    neurons and the agglomeration can then join them through its z contacts. Noise-free affinities of two touching
    boxes (face in the middle) come out right, but with Gaussian noise of sigma 0.1 on the affinities fragments
    straddled the face for every seed we tried, and waterz then joined the two boxes. ``boundary="symmetric"`` marks
    both sides of the face and keeps the fragments inside one neuron there. The default stays the public one: the
    paper's numbers were measured with it, and on affinities of the public training target (label borders widened to
    0, ``genSegMalis``) it scored better (16 FIB-SEM sections: waterz VI 2.15 against 2.74 with ``"symmetric"``).

    Channel order (as :class:`LabelToAffinity`, which follows the public ``seg_to_affgraph(mknhood3d(1))``, whose
    neighbourhood is ``[[-1, 0, 0], [0, -1, 0], [0, 0, -1]]``): channel 0 is the affinity of voxel ``(z, y, x)`` to
    ``(z - 1, y, x)``, channel 1 to ``(z, y - 1, x)``, channel 2 to ``(z, y, x - 1)``; 1 means "same neuron".

    Args:
        affinities: ``(3, Z, Y, X)`` affinities in ``[0, 1]`` (numpy array or tensor).
        threshold: boundary-map value above which a pixel counts as boundary for the distance transform (0.25).
        sigma_seeds: Gaussian smoothing of the distance transform before seeds are taken (2.0).
        sigma_weights: Gaussian smoothing of the boundary map in the watershed height map (2.0, elf's default).
        min_size: fragments smaller than this (pixels per section) are merged into neighbours (100, elf's default).
        alpha: weight of the boundary map against the inverted distance transform in the height map (0.9).
        boundary: ``"previous"`` (default, the public code's) or ``"symmetric"`` (see :func:`boundary_map`).
        n_threads: threads over sections (default: all CPU cores).

    Returns:
        ``(Z, Y, X)`` ``uint64`` fragments, ids ``1 .. N`` consecutive and unique over the volume (a fragment never
        spans two sections); 0 is not used.

    Raises:
        ValueError: affinities not 4D, not 3 channels, not finite or outside ``[0, 1]``; ``min_size`` negative;
            unknown ``boundary``.
        OptionalImportError: python-elf is not installed.

    Example:
        >>> affs = np.ones((3, 4, 32, 32), dtype=np.float32); affs[2, ..., 16] = 0  # x-edge across the face
        >>> np.unique(affinity_supervoxels(affs)).size  # 2 fragments in each of 4 sections
        8
    """
    affs = check_affinities(affinities, "affinity_supervoxels")
    if min_size < 0:
        raise ValueError(f"affinity_supervoxels: min_size must be >= 0, got {min_size}.")
    if boundary not in BOUNDARY_MAPS:
        raise ValueError(f"affinity_supervoxels: boundary must be one of {list(BOUNDARY_MAPS)}, got {boundary!r}.")
    require(has_elf, "python-elf", "affinity_supervoxels")
    fragments, _ = elf_ws.stacked_watershed(
        boundary_map(affs, boundary),
        threshold=threshold,
        sigma_seeds=sigma_seeds,
        sigma_weights=sigma_weights,
        min_size=min_size,
        alpha=alpha,
        n_threads=n_threads,
    )
    return relabel_consecutive(fragments)


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """``uint64`` copy of ``labels`` with the non-zero ids renumbered ``1 .. N`` in increasing order; 0 stays 0."""
    labels = np.asarray(labels)
    if labels.dtype != np.uint64:
        labels = labels.astype(np.uint64)
    return relabel_sequential(labels)[0].astype(np.uint64, copy=False)
