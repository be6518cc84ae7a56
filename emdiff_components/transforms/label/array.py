"""Mask encodings for diffusion segmentation: integer labels <-> masks in [-1, 1]."""

from __future__ import annotations

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_tensor
from monai.utils.type_conversion import convert_to_dst_type

from ...postprocessing.ensemble import FUSION_METHODS, fuse_ensemble

__all__ = ["LabelToSignedMask", "SignedMaskToLabel", "FuseEnsemble"]


class LabelToSignedMask(Transform):
    """Integer label ``([B,] 1, H, W)`` -> mask in [-1, 1]: one channel for binary, one-hot channels for multi-class.

    Diffusion segmentation models (Cold SegDiffusion, ECSD, MedSegDiff) diffuse the mask in [-1, 1].

    Args:
        num_classes: classes including background (2 = binary -> 1 channel; K > 2 -> K one-hot channels).
        channel_dim: the channel axis (0 for a single sample, 1 for a batch).

    Example::

        LabelToSignedMask(num_classes=3)(np.array([[[0, 2]]]))  # -> shape (3, 1, 2), values -1 / 1
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_classes: int = 2, channel_dim: int = 0) -> None:
        if num_classes < 2:
            raise ValueError(f"LabelToSignedMask: num_classes must be >= 2, got {num_classes}.")
        self.num_classes = num_classes
        self.channel_dim = channel_dim

    def __call__(self, label: NdarrayOrTensor) -> NdarrayOrTensor:
        lab = convert_to_tensor(label, track_meta=False).long()
        if lab.shape[self.channel_dim] != 1:
            raise ValueError(f"LabelToSignedMask: label needs one channel on axis {self.channel_dim}, got {lab.shape}.")
        low, high = int(lab.min()), int(lab.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(f"LabelToSignedMask: label values must be in [0, {self.num_classes - 1}], got [{low}, {high}].")
        if self.num_classes == 2:
            out = lab.float() * 2.0 - 1.0
        else:
            out = torch.nn.functional.one_hot(lab.squeeze(self.channel_dim), self.num_classes)
            out = out.movedim(-1, self.channel_dim).float() * 2.0 - 1.0
        return convert_to_dst_type(out, label, dtype=torch.float32 if isinstance(label, torch.Tensor) else np.float32)[0]


class SignedMaskToLabel(Transform):
    """Mask ``([B,] C, H, W)`` in [-1, 1] -> integer label ``([B,] 1, H, W)``: ``> 0`` for one channel, else argmax.

    The inverse of :class:`LabelToSignedMask`.

    Args:
        channel_dim: the channel axis (0 for a single sample, 1 for a batch).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, channel_dim: int = 0) -> None:
        self.channel_dim = channel_dim

    def __call__(self, mask: NdarrayOrTensor) -> NdarrayOrTensor:
        m = convert_to_tensor(mask, track_meta=False)
        if m.shape[self.channel_dim] == 1:
            out = (m > 0).long()
        else:
            out = m.argmax(dim=self.channel_dim, keepdim=True)
        return convert_to_dst_type(out, mask, dtype=torch.int64 if isinstance(mask, torch.Tensor) else np.int64)[0]


class FuseEnsemble(Transform):
    """K sampled masks in [-1, 1] -> one integer label map and a per-pixel uncertainty map.

    MedSegDiff / BIEDSNet sample a diffusion segmenter K times and fuse the samples (Wu et al., MIDL 2024,
    https://arxiv.org/abs/2211.00611). The members arrive stacked along the channel axis, ``(K * C, H, W)`` (as
    :class:`emdiff_components.diffusion.GaussianMaskInferer` returns them with ``output="members"``), and are read
    as probabilities ``(x + 1) / 2``.

    - Binary (C = 1): :func:`emdiff_components.postprocessing.fuse_ensemble` (``"mean"`` threshold, ``"majority"``
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
