"""Dictionary twins of the serial-section augmentations: one draw per call, shared by every key."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_numpy

from .array import RandMisalignment, RandMissingSection

__all__ = ["RandMisalignmentd", "RandMissingSectiond"]


class _SharedDraw(RandomizableTransform, MapTransform):
    """Holds one array transform; draws once from the first present key and applies that draw to every key."""

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        shape = None
        for key in self.key_iterator(d):
            key_shape = tuple(convert_to_numpy(d[key]).shape[1:])
            if shape is not None and key_shape != shape:
                raise ValueError(f"{type(self).__name__}: every key needs one spatial shape, got {shape} and "
                                 f"{key_shape} for {key!r}.")
            d[key] = self.transform(d[key], randomize=shape is None)
            shape = key_shape
        return d


class RandMisalignmentd(_SharedDraw):
    """Dictionary twin of :class:`RandMisalignment`: image and labels are displaced by the same offsets.

    Args:
        keys: channel-first volumes ``(C, Z, Y, X)`` of one spatial shape, e.g. ``("image", "label")``.
        prob, prob_slip, prob_shift, max_misalign, padding, slip_ratio, axis: see :class:`RandMisalignment`.
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.

    Example::

        RandMisalignmentd(("image", "label")).set_random_state(0)(sample)
    """

    backend = RandMisalignment.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        prob_slip: float = 0.2,
        prob_shift: float = 0.2,
        max_misalign: int = 17,
        padding: int = 20,
        slip_ratio: float = 0.5,
        axis: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)  # the inner transform draws ``prob``
        self.transform = RandMisalignment(prob, prob_slip, prob_shift, max_misalign, padding, slip_ratio, axis)


class RandMissingSectiond(_SharedDraw):
    """Dictionary twin of :class:`RandMissingSection`; give it image keys only (labels of missing sections stay).

    Args:
        keys: channel-first images ``(C, Z, Y, X)`` of one spatial shape; several keys get the same sections.
        prob, miss_fully_ratio, miss_part_ratio, mode, size_ratio, fill_value, axis: see :class:`RandMissingSection`.
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.
    """

    backend = RandMissingSection.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        miss_fully_ratio: float = 0.2,
        miss_part_ratio: float = 0.5,
        mode: str = "mix",
        size_ratio: float = 0.3,
        fill_value: float = 0.0,
        axis: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.transform = RandMissingSection(prob, miss_fully_ratio, miss_part_ratio, mode, size_ratio, fill_value, axis)
