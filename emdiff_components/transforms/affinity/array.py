"""Instance labels -> nearest-neighbour affinities, the training target of NeuroDiff's downstream segmentation."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_numpy
from monai.utils.type_conversion import convert_to_dst_type

__all__ = ["LabelToAffinity"]


def _dilate_in_plane(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``iterations`` 3x3 binary dilations of every z-section of a ``(Z, Y, X)`` mask (= one square of side 2k+1)."""
    if iterations == 0:
        return mask
    out = mask
    for axis in (1, 2):  # a square structuring element is separable: OR over shifts along Y, then along X
        padded = np.pad(out, [(iterations, iterations) if a == axis else (0, 0) for a in range(3)])
        size = out.shape[axis]
        out = np.zeros_like(mask)
        for shift in range(2 * iterations + 1):
            out |= np.take(padded, np.arange(shift, shift + size), axis=axis)
    return out


class LabelToAffinity(Transform):
    """Instance labels ``(Z, Y, X)`` or ``(1, Z, Y, X)`` -> 3 nearest-neighbour affinities ``(3, Z, Y, X)`` float32.

    The target of Lee et al. "Superhuman Accuracy on the SNEMI3D Connectomics Challenge"
    (https://arxiv.org/abs/1706.00120), built as the NeuroDiff public trainer builds it (Jiang et al., ISBI 2026,
    https://arxiv.org/abs/2601.15779; ``segmentation_scripts/dataloader/provider_train.py`` ``label_to_affinity``:
    ``genSegMalis(label, 1)`` then ``seg_to_affgraph(label, mknhood3d(1), pad="replicate")``):

    1. border widening (``widen_border``): a voxel whose label differs from its -Y or -X neighbour is a boundary
       voxel (z is not looked at); the boundary mask is dilated in-plane ``widen_border`` times with a 3x3 square and
       set to background 0. ``0`` erases the boundary voxels only; ``None`` skips the step.
    2. channel ``c`` (0 = z, 1 = y, 2 = x) at voxel ``p`` is the edge between ``p`` and ``p - e_c`` (offset -1 on
       that axis): 1 when both labels are equal and > 0, else 0. Label 0 (background, and the erased borders) has
       affinity 0 to everything, including itself.
    3. the first plane of each axis (``z = 0`` for channel 0, ``y = 0`` for 1, ``x = 0`` for 2) has no -1
       neighbour: with ``replicate_border`` (``pad="replicate"``) it is 1 where the (widened) label is > 0, as if
       the volume continued with a copy of that plane; otherwise 0.

    Differences from the public code: it adds the Y and X label differences as uint32, so a voxel whose differences
    cancel modulo 2**32 (left and upper labels ``l``, ``t`` with ``l + t = 2 c``) is not marked; here any difference
    marks it (the widening hides this in practice: on the 64 x 250 x 250 FIB-SEM medulla labels both agree on every
    voxel). The public code also wraps labels to uint16 in its misalignment augmentation, which is not done here.

    Args:
        widen_border: 3x3 in-plane dilations of the label boundaries set to background (int >= 0 or None); default 1.
        replicate_border: affinities of the first plane of each axis from the label itself; default True.

    Returns:
        float32 ``(3, Z, Y, X)`` affinities in {0, 1}, a numpy array or tensor like the input.

    Example::

        affinities = LabelToAffinity()(labels)  # labels (1, 16, 160, 160) instance ids -> (3, 16, 160, 160)
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.NUMPY]

    def __init__(self, widen_border: int | None = 1, replicate_border: bool = True) -> None:
        if widen_border is not None and (
            isinstance(widen_border, bool) or not isinstance(widen_border, int) or widen_border < 0
        ):
            raise ValueError(f"LabelToAffinity: widen_border must be an int >= 0 or None, got {widen_border!r}.")
        self.widen_border, self.replicate_border = widen_border, bool(replicate_border)

    def _labels(self, label: NdarrayOrTensor) -> np.ndarray:
        arr = convert_to_numpy(label)
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 3:
            raise ValueError(f"LabelToAffinity: expected labels (Z, Y, X) or (1, Z, Y, X), got {tuple(arr.shape)}.")
        if arr.dtype == bool:
            return arr.astype(np.int64)
        if np.issubdtype(arr.dtype, np.floating):
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise ValueError("LabelToAffinity: float labels must hold whole numbers (instance ids).")
        elif not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"LabelToAffinity: labels must be integers, got dtype {arr.dtype}.")
        if arr.size and arr.min() < 0:
            raise ValueError(f"LabelToAffinity: labels must be >= 0 (0 is background), got minimum {arr.min()}.")
        return arr

    def widen(self, label: np.ndarray) -> np.ndarray:
        """Step 1 on a ``(Z, Y, X)`` label array: the widened borders set to 0 (a new array)."""
        out = label.copy()
        if self.widen_border is None:
            return out
        boundary = np.zeros(label.shape, dtype=bool)
        boundary[:, 1:] |= label[:, 1:] != label[:, :-1]
        boundary[:, :, 1:] |= label[:, :, 1:] != label[:, :, :-1]
        out[_dilate_in_plane(boundary, self.widen_border)] = 0
        return out

    def __call__(self, label: NdarrayOrTensor) -> NdarrayOrTensor:
        seg = self.widen(self._labels(label))
        fg = seg > 0
        aff = np.zeros((3, *seg.shape), dtype=np.float32)
        for c in range(3):
            here = [slice(None)] * 3
            here[c] = slice(1, None)
            before = [slice(None)] * 3
            before[c] = slice(None, -1)
            here, before = tuple(here), tuple(before)
            aff[c][here] = (seg[here] == seg[before]) & fg[here] & fg[before]
            if self.replicate_border:
                first = [slice(None)] * 3
                first[c] = slice(0, 1)
                aff[c][tuple(first)] = fg[tuple(first)]
        return convert_to_dst_type(aff, label, dtype=np.float32)[0]
