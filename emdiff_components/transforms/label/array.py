"""Mask encodings for diffusion segmentation: integer labels <-> masks in [-1, 1]."""

from __future__ import annotations

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_tensor
from monai.utils.type_conversion import convert_to_dst_type

__all__ = ["LabelToSignedMask", "SignedMaskToLabel"]


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
