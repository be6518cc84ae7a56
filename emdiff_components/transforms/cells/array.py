"""Cell masks of the cascaded cell synthesis: grey-level masks (texture condition), binarised sampled masks, and the
three-class target (background, interior, boundary) of the downstream cell segmentation network.

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_tensor
from monai.utils.type_conversion import convert_to_dst_type
from skimage.segmentation import find_boundaries

__all__ = ["BinarizeMask", "CellClasses", "GreyLevelMask"]

# diffusers' DDIMPipeline maps x in [-1, 1] to round((x + 1) / 2 * 255) in uint8 and the public mask script keeps the
# pixels != 0: x > -1 + 1 / 255 (numpy rounds half to even, so the value at exactly 0.5 / 255 rounds to 0).
REFERENCE_MASK_THRESHOLD = -1.0 + 1.0 / 255.0


def _float_out(out: torch.Tensor, like: NdarrayOrTensor) -> NdarrayOrTensor:
    """``out`` as float32 of the same kind (numpy / torch / MetaTensor, device) as ``like``."""
    return convert_to_dst_type(out, like, dtype=torch.float32 if isinstance(like, torch.Tensor) else np.float32)[0]


class GreyLevelMask(Transform):
    """Instance mask + image -> grey-level mask: every cell's pixels carry the cell's mean scaled intensity.

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515. The public code (``utils/extract_single_cells.py``) writes each cell's mask
    with ``mean((I - min_val) / (max_val - min_val))`` over the cell's pixels, background 0, with the fixed intensity
    range of the data set (``min_val = 32995``, ``max_val = 36863``: Fluo-N2DL-HeLa's 16-bit camera values) and no
    clipping. This is that map for a whole instance mask (any number of cells, 2D or 3D).

    Note: the public training set (``datasets/dataset_CTC.py``) and texture sampler (``inference/generate_cells.py``)
    then divide each single-cell mask by its maximum, which makes a one-cell mask binary; MONAI's
    ``ScaleIntensity(minv=0.0, maxv=1.0)`` after this transform does the same (background 0 stays the minimum).

    Args:
        a_min: intensity mapped to 0; ``None`` (default): the image's minimum (HeLa in the reference: 32995).
        a_max: intensity mapped to 1; ``None`` (default): the image's maximum (HeLa in the reference: 36863).
            When both come from a constant image the scaled image is 0 everywhere.

    Returns:
        float32 mask shaped like ``image`` ``(C, [Z,] Y, X)``: channel c holds the per-cell mean of image channel c;
        of the same kind (numpy / torch / MetaTensor, device) as the image.

    Example::

        image = np.array([[[0.0, 2.0, 4.0], [6.0, 8.0, 8.0]]])
        label = np.array([[[0, 1, 1], [2, 2, 0]]])
        GreyLevelMask(a_min=0.0, a_max=8.0)(image, label)  # [[[0, 0.375, 0.375], [0.875, 0.875, 0]]]
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, a_min: float | None = None, a_max: float | None = None) -> None:
        for name, value in (("a_min", a_min), ("a_max", a_max)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"GreyLevelMask: {name} must be a finite number or None, got {value!r}.")
        if a_min is not None and a_max is not None and not a_max > a_min:
            raise ValueError(f"GreyLevelMask: a_max must be > a_min, got a_min={a_min!r}, a_max={a_max!r}.")
        self.a_min = a_min
        self.a_max = a_max

    def __call__(self, image: NdarrayOrTensor, label: NdarrayOrTensor) -> NdarrayOrTensor:
        img = convert_to_tensor(image, track_meta=False, dtype=torch.float64)
        lab = convert_to_tensor(label, track_meta=False)
        if img.ndim < 2 or lab.ndim != img.ndim or lab.shape[0] != 1 or lab.shape[1:] != img.shape[1:]:
            raise ValueError(
                f"GreyLevelMask: image (C, [Z,] Y, X) and label (1, [Z,] Y, X) must share the spatial shape, got "
                f"image {tuple(img.shape)} and label {tuple(lab.shape)}."
            )
        if lab.is_floating_point() and not torch.equal(lab, lab.round()):
            raise ValueError("GreyLevelMask: label must hold integer instance ids, got non-integer values.")
        lab = lab.long().to(img.device).reshape(-1)
        if lab.numel() and int(lab.min()) < 0:
            raise ValueError(f"GreyLevelMask: label ids must be >= 0 (0 = background), got {int(lab.min())}.")
        low = float(img.min()) if self.a_min is None else self.a_min
        high = float(img.max()) if self.a_max is None else self.a_max
        scaled = (img - low) / (high - low) if high > low else torch.zeros_like(img)
        flat = scaled.reshape(img.shape[0], -1)
        size = int(lab.max()) + 1 if lab.numel() else 1
        sums = torch.zeros((img.shape[0], size), dtype=torch.float64, device=img.device).index_add_(1, lab, flat)
        counts = torch.bincount(lab, minlength=size).clamp(min=1)
        means = sums / counts
        means[:, 0] = 0.0  # background
        return _float_out(means[:, lab].reshape(img.shape), image)


class BinarizeMask(Transform):
    """A sampled mask in [-1, 1] -> binary mask {0, 1}: 1 where the value is above ``threshold``.

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515. The public stage-1 script (``inference/generate_masks.py``) converts the DDIM
    sample to uint8 (diffusers: ``round((x + 1) / 2 * 255)``) and sets every non-zero pixel to 255, i.e. keeps
    ``x > -1 + 1/255``: any value above the background level -1 is cell. This threshold is the default; the masks are
    grey-level in training (background -1, cells above it), so 0 would cut dim cells (``0.0`` is available).

    Args:
        threshold: values strictly above it become 1, default ``-1 + 1/255`` (the public code's).

    Returns:
        float32 mask of the input's shape with values 0 and 1, of the same kind (numpy / torch / MetaTensor) as the
        input.

    Example::

        BinarizeMask()(np.array([[-1.0, -0.999, -0.99, 0.5]]))  # [[0, 0, 1, 1]]
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, threshold: float = REFERENCE_MASK_THRESHOLD) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"BinarizeMask: threshold must be a finite number, got {threshold!r}.")
        self.threshold = float(threshold)

    def __call__(self, mask: NdarrayOrTensor) -> NdarrayOrTensor:
        values = convert_to_tensor(mask, track_meta=False)
        if not values.is_floating_point():
            raise ValueError(f"BinarizeMask: mask must be a float array in [-1, 1], got dtype {values.dtype}.")
        if torch.isnan(values).any():
            raise ValueError("BinarizeMask: mask contains NaN.")
        return _float_out((values > self.threshold).to(torch.float32), mask)


class CellClasses(Transform):
    """Instance mask -> three classes per pixel: 0 background, 1 cell interior, 2 cell boundary.

    The segmentation network of the CellCascade benchmark predicts these classes; instances are then the connected
    interiors grown back over the boundary (:func:`emdiff_components.postprocessing.cell_instances`). The boundary is
    scikit-image's ``find_boundaries(mode="inner")``: the pixels of a cell that touch another label (the background or
    another cell), one pixel wide with ``width`` 1, so touching cells keep separate interiors. This three-class design
    (as in Caicedo et al., Cytometry A 2019, for nuclei) is ours: the paper does not say how its segmentation networks
    turn masks into targets.

    Args:
        width: boundary width in pixels (repeated one-pixel erosions of each cell's interior), default 1.

    Returns:
        int64 class map of the input's shape ``(1, [Z,] Y, X)``, of the same kind (numpy / torch) as the input.

    Example::

        CellClasses()(np.array([[[0, 1, 1, 1, 0]]]))  # [[[0, 2, 1, 2, 0]]]
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.NUMPY]

    def __init__(self, width: int = 1) -> None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"CellClasses: width must be an integer >= 1, got {width!r}.")
        self.width = width

    def __call__(self, label: NdarrayOrTensor) -> NdarrayOrTensor:
        lab = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label)
        if lab.ndim not in (3, 4) or lab.shape[0] != 1:
            raise ValueError(f"CellClasses: label must be (1, [Z,] Y, X) instance ids, got shape {lab.shape}.")
        if np.issubdtype(lab.dtype, np.floating) and not np.array_equal(lab, np.round(lab)):
            raise ValueError("CellClasses: label must hold integer instance ids, got non-integer values.")
        ids = lab[0].astype(np.int64)
        if ids.size and ids.min() < 0:
            raise ValueError(f"CellClasses: label ids must be >= 0 (0 = background), got {ids.min()}.")
        classes = (ids > 0).astype(np.int64)
        inner = ids.copy()
        for _ in range(self.width):
            edge = find_boundaries(inner, mode="inner") & (inner > 0)
            classes[edge] = 2
            inner[edge] = 0
        return convert_to_dst_type(classes[None], label, dtype=torch.int64 if isinstance(label, torch.Tensor)
                                   else np.int64)[0]
