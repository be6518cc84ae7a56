"""Dictionary twins of the mask-encoding transforms."""

from __future__ import annotations

from typing import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from .array import LabelToSignedMask, SignedMaskToLabel

__all__ = ["LabelToSignedMaskd", "SignedMaskToLabeld"]


class LabelToSignedMaskd(MapTransform):
    """Dictionary twin of :class:`LabelToSignedMask`: same Args, plus ``keys`` and ``allow_missing_keys``."""

    backend = LabelToSignedMask.backend

    def __init__(self, keys: KeysCollection, num_classes: int = 2, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = LabelToSignedMask(num_classes=num_classes)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class SignedMaskToLabeld(MapTransform):
    """Dictionary twin of :class:`SignedMaskToLabel`: ``keys`` and ``allow_missing_keys``."""

    backend = SignedMaskToLabel.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = SignedMaskToLabel()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
