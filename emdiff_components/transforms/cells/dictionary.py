"""Dictionary twins of the cell-mask transforms (grey-level masks, binarised sampled masks, three-class targets)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from .array import REFERENCE_MASK_THRESHOLD, BinarizeMask, CellClasses, GreyLevelMask

__all__ = ["BinarizeMaskd", "CellClassesd", "GreyLevelMaskd"]


class GreyLevelMaskd(MapTransform):
    """Dictionary twin of :class:`GreyLevelMask`: the grey-level mask of the instance mask ``keys`` and ``image_key``.

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515.

    Args:
        keys: the one key of the instance mask ``(1, [Z,] Y, X)``, default ``"label"``.
        image_key: the image whose per-cell mean intensities fill the mask, default ``"image"``.
        output_key: where the grey-level mask is written, default ``"grey_mask"``; must differ from both inputs.
        a_min, a_max: as in :class:`GreyLevelMask`.
        allow_missing_keys: skip (write nothing) when the label key is missing.

    Example::

        pre = Compose([LoadImaged(["image", "label"], ensure_channel_first=True),
                       GreyLevelMaskd("label", image_key="image", a_min=32995, a_max=36863)])
    """

    backend = GreyLevelMask.backend

    def __init__(
        self,
        keys: KeysCollection = "label",
        image_key: str = "image",
        output_key: str = "grey_mask",
        a_min: float | None = None,
        a_max: float | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        name = type(self).__name__
        if len(self.keys) != 1:
            raise ValueError(f"{name}: keys must name exactly one instance mask, got {self.keys}.")
        if output_key in self.keys or output_key == image_key:
            raise ValueError(f"{name}: output_key {output_key!r} would overwrite an input key; choose another.")
        self.image_key = image_key
        self.output_key = output_key
        self.grey = GreyLevelMask(a_min=a_min, a_max=a_max)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.image_key not in d:
                raise KeyError(
                    f"{type(self).__name__}: image_key {self.image_key!r} is missing from the data; available keys: "
                    f"{list(d)}."
                )
            d[self.output_key] = self.grey(d[self.image_key], d[key])
        return d


class BinarizeMaskd(MapTransform):
    """Dictionary twin of :class:`BinarizeMask`: binarises every key in place.

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515.

    Args:
        keys: keys of sampled masks in [-1, 1], default ``"pred"``.
        threshold: as in :class:`BinarizeMask` (default ``-1 + 1/255``, the public code's).
        allow_missing_keys: skip missing keys.

    Example::

        post = BinarizeMaskd(keys="pred")  # {"pred": mask in [-1, 1]} -> {"pred": mask in {0, 1}}
    """

    backend = BinarizeMask.backend

    def __init__(
        self, keys: KeysCollection = "pred", threshold: float = REFERENCE_MASK_THRESHOLD, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.binarize = BinarizeMask(threshold=threshold)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.binarize(d[key])
        return d


class CellClassesd(MapTransform):
    """Dictionary twin of :class:`CellClasses`: instance masks under ``keys`` -> background / interior / boundary.

    Args:
        keys: keys of instance masks ``(1, [Z,] Y, X)``, default ``"label"``; replaced in place.
        width: boundary width in pixels, default 1.
        allow_missing_keys: skip missing keys.
    """

    backend = CellClasses.backend

    def __init__(self, keys: KeysCollection = "label", width: int = 1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.classes = CellClasses(width=width)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.classes(d[key])
        return d
