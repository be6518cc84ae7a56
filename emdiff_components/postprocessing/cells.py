"""Class probabilities (background, interior, boundary) -> cell instances: seeded watershed of the interiors.

The downstream segmentation of the CellCascade benchmark (Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D
Microscopy Image Synthesis to Enhance Cell Segmentation", https://arxiv.org/abs/2411.11515, trains segmentation
networks on real and real + synthetic cells) predicts the three classes of
:class:`~emdiff_components.transforms.CellClasses`. Each connected interior is one seed; the seeds grow over the
rest of the foreground (interior or boundary) by a watershed on the interior probability, so a boundary pixel joins
the cell it belongs to and touching cells stay apart.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import watershed

__all__ = ["cell_instances"]


def cell_instances(
    probabilities: np.ndarray | torch.Tensor, min_seed_size: int = 4, min_size: int = 16
) -> np.ndarray:
    """Instance labels from ``(3, [Z,] Y, X)`` probabilities of background, interior and boundary.

    Steps: foreground = pixels whose most likely class is interior or boundary; seeds = connected components
    (face connectivity) of the pixels whose most likely class is interior, smaller ones than ``min_seed_size`` dropped;
    a watershed of ``1 - p(interior)`` from the seeds inside the foreground labels the rest; cells smaller than
    ``min_size`` pixels are removed and the labels renumbered 1..n in raster order of their first pixel.

    Args:
        probabilities: softmax output of the three classes, 2D or 3D, without batch dimension.
        min_seed_size: fewest interior pixels of a seed, default 4.
        min_size: fewest pixels of a cell, default 16.

    Returns:
        int32 instance labels ``([Z,] Y, X)``, 0 = background.

    Raises:
        ValueError: not three channels, or not 2D / 3D.
    """
    p = probabilities.detach().float().cpu().numpy() if isinstance(probabilities, torch.Tensor) else np.asarray(
        probabilities, dtype=np.float32)
    if p.ndim not in (3, 4) or p.shape[0] != 3:
        raise ValueError(
            f"cell_instances: probabilities must be (3, [Z,] Y, X) for background, interior, boundary; got {p.shape}."
        )
    best = p.argmax(0)
    seeds, _ = ndimage.label(best == 1)
    if min_seed_size > 1 and seeds.max():
        sizes = np.bincount(seeds.ravel())
        seeds[sizes[seeds] < min_seed_size] = 0
    cells = watershed(1.0 - p[1], markers=seeds, mask=best > 0)
    if min_size > 1 and cells.max():
        sizes = np.bincount(cells.ravel())
        cells[sizes[cells] < min_size] = 0
    _, first = np.unique(cells.ravel(), return_index=True)
    ids = np.unique(cells.ravel())
    order = ids[ids > 0][np.argsort(first[ids > 0])]
    lookup = np.zeros(int(cells.max()) + 1, dtype=np.int32)
    lookup[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return lookup[cells]
