"""Dictionary twin of the label -> affinity transform."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple

from .array import LabelToAffinity

__all__ = ["LabelToAffinityd"]


class LabelToAffinityd(MapTransform):
    """Dictionary twin of :class:`LabelToAffinity`: ``d[output_key] = LabelToAffinity(...)(d[key])``.

    Args:
        keys: label volumes ``(Z, Y, X)`` or ``(1, Z, Y, X)``; default ``"label"``.
        output_keys: where the ``(3, Z, Y, X)`` affinities go, one per key; default ``"affinity"`` (the labels stay,
            for the metrics). None replaces the labels.
        widen_border, replicate_border: see :class:`LabelToAffinity`.
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.

    Example::

        LabelToAffinityd()({"image": image, "label": labels})  # adds "affinity" (3, Z, Y, X)
    """

    backend = LabelToAffinity.backend

    def __init__(
        self,
        keys: KeysCollection = "label",
        output_keys: KeysCollection | None = "affinity",
        widen_border: int | None = 1,
        replicate_border: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = LabelToAffinity(widen_border, replicate_border)
        self.output_keys = self.keys if output_keys is None else ensure_tuple(output_keys)
        if len(self.output_keys) != len(self.keys):
            raise ValueError(
                f"LabelToAffinityd: output_keys needs one key per key, got {list(self.output_keys)} for {list(self.keys)}."
            )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self.converter(d[key])
        return d
