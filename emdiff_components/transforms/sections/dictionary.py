"""Dictionary wrapper of :class:`~emdiff_components.transforms.sections.array.KeepSections`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform

from .array import KeepSections

__all__ = ["KeepSectionsd"]


class KeepSectionsd(MapTransform):
    """Dictionary twin of :class:`KeepSections`: the same sections of image and label.

    Args:
        keys: keys of the volumes to cut alike (e.g. ``["image", "label"]``).
        fraction: default share kept, see :class:`KeepSections`; default 1.0.
        min_sections: pad to at least this many sections; default 1.
        fraction_key: entry key holding a per-volume fraction that overrides ``fraction`` (e.g. ``"label_fraction"``
            as written by :func:`~emdiff_components.data.neuron_training_datalist`: real volumes get the budget,
            synthetic ones 1.0); default ``"label_fraction"``; entries without it use ``fraction``.
        axis: the section axis; default 1.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = KeepSections.backend

    def __init__(
        self,
        keys: KeysCollection,
        fraction: float = 1.0,
        min_sections: int = 1,
        fraction_key: str | None = "label_fraction",
        axis: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.keeper = KeepSections(fraction, min_sections, axis)
        self.fraction_key = fraction_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        fraction = d.get(self.fraction_key) if self.fraction_key is not None else None
        for key in self.key_iterator(d):
            d[key] = self.keeper(d[key], fraction)
        return d
