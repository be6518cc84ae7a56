"""Seam score of an image sampled in tiles: how much more the intensity jumps at tile borders than elsewhere."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["seam_score", "tile_borders"]


def tile_borders(size: int, roi: int, overlap: float) -> set[int]:
    """Planes ``p`` (the jump between ``p - 1`` and ``p``) within one voxel of a tile face, tiles placed as MONAI's
    sliding window places them along one axis.

    Tiles start every ``max(1, int(roi * (1 - overlap)))`` voxels, the last one moved back to end at ``size``
    (MONAI ``dense_patch_slices``). Faces at 0 and ``size`` (the volume's own) are left out.

    Args:
        size: the volume's length along the axis (positive int).
        roi: the tile's length along the axis (positive int); ``roi >= size`` means one tile and no inner face.
        overlap: tile overlap fraction in [0, 1).

    Returns:
        The border planes, a set of ints in ``[0, size]``; empty when one tile covers the axis.

    Example:
        >>> sorted(tile_borders(48, 16, 0.0))
        [15, 16, 17, 31, 32, 33]
    """
    if size < 1 or roi < 1:
        raise ValueError(f"tile_borders: size and roi must be positive ints, got size={size!r}, roi={roi!r}.")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile_borders: overlap must be in [0, 1), got {overlap!r}.")
    interval = max(1, int(roi * (1 - overlap)))
    count = math.ceil((size - roi) / interval) + 1 if size > roi else 1
    edges = set()
    for start in {min(i * interval, max(size - roi, 0)) for i in range(count)}:
        edges |= {start, start + roi}
    return {e + k for e in edges if 0 < e < size for k in (-1, 0, 1)}


def seam_score(volume: torch.Tensor | np.ndarray, roi: int, overlap: float, axis: int, margin: int = 4) -> float:
    """Largest mean adjacent-voxel jump across a tile-border plane over the largest across an interior plane.

    The jump across plane ``p`` (between voxels ``p - 1`` and ``p`` along ``axis``) is the mean over the plane of
    ``|v[p] - v[p - 1]|``. Border planes are those of :func:`tile_borders` (within one voxel of a tile face);
    interior planes are all others at least ``margin`` voxels from the volume's own faces (zero padding acts there
    whether sampled in tiles or not). A seam makes a border plane jump more than any interior plane: score > 1; a
    seamless image scores about 1 or less. The score is invariant to scaling the intensities, so [-1, 1] and
    [0, 255] images compare. To compare a tiled image with one sampled in a single tile, score both at the borders
    of the smaller tiles.

    Args:
        volume: an image of any number of dimensions (e.g. ``(B, C, [Z,] Y, X)``), tensor or numpy array.
        roi: the tile length along ``axis`` whose borders are scored.
        overlap: the tiles' overlap fraction in [0, 1).
        axis: the axis across which jumps are measured (negative counts from the end).
        margin: planes this close to the volume's faces are not interior; default 4.

    Returns:
        The score, a float >= 0 (``inf`` if every interior plane is flat and a border plane is not).

    Raises:
        ValueError: ``roi`` covers the whole axis (no tile border to score), or no interior plane remains.

    Example:
        >>> image = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
        >>> image[:, 32:] += 1.0  # a step at the border of 32-wide tiles
        >>> seam_score(image, 32, 0.0, axis=1) > 2
        True
    """
    volume = torch.as_tensor(volume).double()
    axis = axis % volume.ndim
    size = volume.shape[axis]
    borders = {p for p in tile_borders(size, roi, overlap) if 0 < p < size}
    if not borders:
        raise ValueError(
            f"seam_score: one tile of {roi} covers the axis of length {size}; there is no border to score."
        )
    interior = [p for p in range(max(margin, 1), size - margin + 1) if p not in borders]
    if not interior:
        raise ValueError(f"seam_score: no interior plane left in length {size} with margin {margin}.")
    jumps = (volume.narrow(axis, 1, size - 1) - volume.narrow(axis, 0, size - 1)).abs()
    jumps = jumps.mean(dim=[d for d in range(volume.ndim) if d != axis])  # jumps[p - 1]: across plane p
    border_jump = max(float(jumps[p - 1]) for p in borders)
    interior_jump = max(float(jumps[p - 1]) for p in interior)
    if interior_jump == 0.0:
        return 0.0 if border_jump == 0.0 else math.inf
    return border_jump / interior_jump
