"""Dictionary twin of the boundary inverse-distance map."""

from __future__ import annotations

from typing import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from .array import BoundaryDistanceWeight

__all__ = ["BoundaryDistanceWeightd"]


class BoundaryDistanceWeightd(MapTransform):
    """Dictionary twin of :class:`BoundaryDistanceWeight`: writes the ``(1, H, W)`` map of ``keys`` to ``output_key``.

    Qi et al. "A Boundary-aware Cold-Diffusion Model for Electron Microscopy Segmentation" (ECSD), section 2.2.

    Put it in the deterministic part of the pipeline (``CacheDataset`` then caches the map) and list ``output_key``
    in the random spatial transforms (flips, rotations, crops) next to the image and label, so the map follows them.

    Args:
        keys: the one key of the edge source: the label (default ``"label"``) or, with ``source="image"``, the image.
        output_key: where the map is written; default ``"boundary_weight"``. Must differ from the source key.
        label_key: the label used by the foreground-area gate; default ``"label"``. When it is missing from the data,
            ``source="label"`` gates on the source itself and ``source="image"`` raises ``KeyError``. ``None``: gate
            on the source for ``source="label"``, no gate for ``source="image"``.
        source, num_classes, blur_kernel_size, blur_sigma, canny_low, canny_high, normalization,
        min_foreground_fraction, size_factor: as in :class:`BoundaryDistanceWeight`.
        allow_missing_keys: skip (write nothing) when the source key is missing.

    Example::

        pre = Compose([BoundaryDistanceWeightd(keys="label"),
                       RandFlipd(keys=["image", "label", "boundary_weight"], prob=0.5, spatial_axis=0)])
    """

    backend = BoundaryDistanceWeight.backend

    def __init__(
        self,
        keys: KeysCollection = "label",
        output_key: str = "boundary_weight",
        label_key: str | None = "label",
        source: str = "label",
        num_classes: int | None = None,
        blur_kernel_size: int = 5,
        blur_sigma: float = 0.0,
        canny_low: float | None = None,
        canny_high: float | None = None,
        normalization: str = "minmax",
        min_foreground_fraction: float = 0.01,
        size_factor: float = 1.1415,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        name = type(self).__name__
        if len(self.keys) != 1:
            raise ValueError(f"{name}: keys must name exactly one edge source, got {self.keys}.")
        if output_key in self.keys:
            raise ValueError(f"{name}: output_key {output_key!r} would overwrite the source key; choose another.")
        self.output_key = output_key
        self.label_key = label_key
        self.weight = BoundaryDistanceWeight(
            source=source,
            num_classes=num_classes,
            blur_kernel_size=blur_kernel_size,
            blur_sigma=blur_sigma,
            canny_low=canny_low,
            canny_high=canny_high,
            normalization=normalization,
            min_foreground_fraction=min_foreground_fraction,
            size_factor=size_factor,
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = None
            if self.label_key is not None and self.label_key != key:
                if self.label_key in d:
                    label = d[self.label_key]
                elif self.weight.source == "image":
                    raise KeyError(
                        f"{type(self).__name__}: label_key {self.label_key!r} (area gate) is missing from the data; "
                        f"available keys: {list(d)}. Pass label_key=None to switch the gate off."
                    )
            d[self.output_key] = self.weight(d[key], label=label)
        return d
