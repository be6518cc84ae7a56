"""Post-transforms of sampled segmentations: K ensemble members -> one label map and an uncertainty map."""

from __future__ import annotations

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_tensor
from monai.utils.type_conversion import convert_to_dst_type

from .ensemble import FUSION_METHODS, fuse_ensemble

__all__ = ["FuseEnsemble"]


class FuseEnsemble(Transform):
    """K sampled masks in [-1, 1] -> one integer label map and a per-pixel uncertainty map.

    MedSegDiff / BIEDSNet sample a diffusion segmenter K times and fuse the samples (Wu et al., MIDL 2024,
    https://arxiv.org/abs/2211.00611). The members arrive stacked along the channel axis, ``(K * C, H, W)`` (as
    :class:`emdiff_components.diffusion.GaussianMaskInferer` returns them with ``output="members"``), and are read
    as probabilities ``(x + 1) / 2``.

    - Binary (C = 1): :func:`~emdiff_components.transforms.fuse_ensemble` (``"mean"`` threshold, ``"majority"``
      vote or ``"staple"``), ``threshold`` on the probability.
    - Multi-class (C one-hot channels): ``"mean"`` takes the argmax of the mean member; ``"majority"`` the most
      frequent of the members' argmax labels (a tie goes to the lowest class); STAPLE is binary only.

    The uncertainty is ``sqrt(a (1 - a))`` with ``a`` the fraction of members whose own label agrees with the fused
    one: the standard deviation of the agreement votes, 0 where all members agree and 0.5 at an even binary split
    (for binary masks this is the spread of the foreground votes that ``fuse_ensemble`` returns).

    Args:
        num_samples: ensemble size K (>= 1).
        method: ``"mean"`` (default), ``"majority"`` or ``"staple"``.
        threshold: foreground probability threshold for binary masks, in (0, 1); default 0.5.

    Returns:
        ``(label, uncertainty)``: ``(1, H, W)`` int64 and ``(1, H, W)`` float32.

    Example::

        label, uncertainty = FuseEnsemble(num_samples=5, method="majority")(members)  # members (5, H, W)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_samples: int, method: str = "mean", threshold: float = 0.5) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"FuseEnsemble: num_samples must be an int >= 1, got {num_samples!r}.")
        if method not in FUSION_METHODS:
            raise ValueError(f"FuseEnsemble: method must be one of {FUSION_METHODS}, got {method!r}.")
        if not 0 < threshold < 1:
            raise ValueError(f"FuseEnsemble: threshold must be in (0, 1), got {threshold}.")
        self.num_samples, self.method, self.threshold = num_samples, method, threshold

    def __call__(self, members: NdarrayOrTensor) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:
        m = convert_to_tensor(members, track_meta=False).float()
        k = self.num_samples
        if m.ndim < 2 or m.shape[0] % k:
            raise ValueError(f"FuseEnsemble: expected (K * C, *spatial) with K = {k}, got shape {tuple(m.shape)}.")
        prob = ((m.reshape(k, m.shape[0] // k, *m.shape[1:]) + 1) / 2).clamp(0, 1)  # (K, C, *spatial)
        if prob.shape[1] == 1:
            label, uncertainty = fuse_ensemble(prob[:, None], self.method, self.threshold)
            label, uncertainty = label[0], uncertainty[0]
        else:
            if self.method == "staple":
                raise ValueError("FuseEnsemble: STAPLE fuses binary masks only; use 'mean' or 'majority'.")
            votes = prob.argmax(dim=1)  # (K, *spatial)
            if self.method == "mean":
                label = prob.mean(dim=0).argmax(dim=0)
            else:
                counts = torch.nn.functional.one_hot(votes, prob.shape[1]).sum(dim=0)  # (*spatial, C)
                label = counts.argmax(dim=-1)  # argmax returns the first maximum: ties go to the lowest class
            agree = (votes == label).float().mean(dim=0)
            label, uncertainty = label[None], (agree * (1 - agree)).sqrt()[None]
        is_tensor = isinstance(members, torch.Tensor)
        out_label = convert_to_dst_type(label.long(), members, dtype=torch.int64 if is_tensor else np.int64)[0]
        out_unc = convert_to_dst_type(uncertainty.float(), members, dtype=torch.float32 if is_tensor else np.float32)[0]
        return out_label, out_unc
