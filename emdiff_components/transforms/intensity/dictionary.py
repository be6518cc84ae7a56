"""Dictionary twin of the slice-wise intensity scaling."""

from __future__ import annotations

from typing import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from .array import ScaleSliceIntensity

__all__ = ["ScaleSliceIntensityd"]


class ScaleSliceIntensityd(MapTransform):
    """Dictionary twin of :class:`ScaleSliceIntensity`: same Args, plus ``keys`` and ``allow_missing_keys``."""

    backend = ScaleSliceIntensity.backend

    def __init__(
        self, keys: KeysCollection, minv: float = -1.0, maxv: float = 1.0, slice_dim: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleSliceIntensity(minv, maxv, slice_dim)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d
