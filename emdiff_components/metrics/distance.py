"""Boundary distances between label maps: 95th-percentile and maximum Hausdorff distance per class.

BIEDSNet (Table 1) reports the Hausdorff distance beside Dice and IoU; MedSegDiff-style papers use the 95th percentile.
MONAI's ``compute_hausdorff_distance`` does the geometry (surface points, Euclidean distances, optional spacing); this
module fixes the empty-mask conventions and returns plain numbers per class.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance
from monai.networks.utils import one_hot

__all__ = ["hausdorff_distances"]


def hausdorff_distances(
    pred: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    num_classes: int = 2,
    spacing: Sequence[float] | float | None = None,
    percentile: float = 95.0,
) -> dict[str, np.ndarray]:
    """Symmetric Hausdorff distances (percentile and maximum) per class between two integer label maps.

    Args:
        pred: predicted label map ``(*spatial)`` (2D or 3D), values in ``0..num_classes-1``.
        truth: true label map of the same shape.
        num_classes: classes including background (class 0 is reported too).
        spacing: pixel size per axis (e.g. mm or nm); ``None``: distances in pixels.
        percentile: the percentile distance (default 95).

    Returns:
        ``{"hd95": (num_classes,), "hd_max": (num_classes,)}`` (key ``hd<percentile>``); per class 0.0 where both
        masks are empty and NaN where exactly one is empty (no distance is defined; report it, do not average it).
    """
    p = torch.as_tensor(np.asarray(pred.detach().cpu() if isinstance(pred, torch.Tensor) else pred)).long()
    g = torch.as_tensor(np.asarray(truth.detach().cpu() if isinstance(truth, torch.Tensor) else truth)).long()
    if p.shape != g.shape:
        raise ValueError(f"hausdorff_distances: prediction {tuple(p.shape)} and truth {tuple(g.shape)} differ in shape.")
    if p.ndim not in (2, 3):
        raise ValueError(f"hausdorff_distances: label maps must be 2D or 3D, got {p.ndim} dims.")
    if not 0 < percentile <= 100:
        raise ValueError(f"hausdorff_distances: percentile must be in (0, 100], got {percentile}.")
    p_hot = one_hot(p[None, None], num_classes, dim=1)
    g_hot = one_hot(g[None, None], num_classes, dim=1)
    kwargs = {"include_background": True, "spacing": spacing}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns for every empty class; the convention below handles them
        pct = compute_hausdorff_distance(p_hot, g_hot, percentile=percentile, **kwargs)[0].double().numpy()
        full = compute_hausdorff_distance(p_hot, g_hot, **kwargs)[0].double().numpy()
    p_empty = (p_hot[0].flatten(1).sum(1) == 0).numpy()
    g_empty = (g_hot[0].flatten(1).sum(1) == 0).numpy()
    result = {}
    for name, values in ((f"hd{percentile:g}", pct), ("hd_max", full)):
        values = values.copy()
        values[p_empty & g_empty] = 0.0
        values[p_empty ^ g_empty] = np.nan
        result[name] = values
    return result
