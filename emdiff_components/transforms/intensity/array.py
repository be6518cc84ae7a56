"""Intensity scaling of EM volumes slice by slice."""

from __future__ import annotations

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_tensor
from monai.utils.type_conversion import convert_to_dst_type

__all__ = ["ScaleSliceIntensity"]


class ScaleSliceIntensity(Transform):
    """Min-max scale every z-slice of a ``(C, Z, Y, X)`` volume to ``[minv, maxv]`` on its own.

    NeuroDiff normalises EM volumes per slice (serial-section EM varies in brightness from slice to slice), then to
    [-1, 1]. A constant slice maps to the middle of the range.

    Args:
        minv: lower end, default -1.
        maxv: upper end, default 1.
        slice_dim: the axis of the slices, default 1 (Z of a channel-first volume).

    Returns:
        float32 array or tensor of the input's shape.

    Example::

        ScaleSliceIntensity()(volume)  # (1, Z, Y, X), every volume[:, z] spans [-1, 1]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, minv: float = -1.0, maxv: float = 1.0, slice_dim: int = 1) -> None:
        if not minv < maxv:
            raise ValueError(f"ScaleSliceIntensity: minv must be < maxv, got {minv}, {maxv}.")
        self.minv, self.maxv, self.slice_dim = float(minv), float(maxv), slice_dim

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        if x.ndim < 3:
            raise ValueError(
                f"ScaleSliceIntensity: expected (C, Z, ...) with slices on axis {self.slice_dim}, got {tuple(x.shape)}."
            )
        dims = [d for d in range(x.ndim) if d != self.slice_dim]
        low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        span = high - low
        unit = torch.where(span > 0, (x - low) / torch.where(span > 0, span, 1.0), 0.5)
        out = unit * (self.maxv - self.minv) + self.minv
        return convert_to_dst_type(out, img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)[0]
