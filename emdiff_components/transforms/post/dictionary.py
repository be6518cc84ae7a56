"""Dictionary twin of the ensemble-fusion post-transform."""

from __future__ import annotations

from typing import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from .array import FuseEnsemble

__all__ = ["FuseEnsembled"]


class FuseEnsembled(MapTransform):
    """Dictionary twin of :class:`FuseEnsemble`: fuses ``d[key]`` in place and stores the uncertainty map.

    Args:
        keys: the key of the stacked members (one key).
        num_samples, method, threshold: see :class:`FuseEnsemble`.
        uncertainty_key: where the ``(1, H, W)`` uncertainty map goes; default ``"uncertainty"``.
        allow_missing_keys: skip a missing key instead of raising ``KeyError``.
    """

    backend = FuseEnsemble.backend

    def __init__(
        self,
        keys: KeysCollection,
        num_samples: int,
        method: str = "mean",
        threshold: float = 0.5,
        uncertainty_key: str = "uncertainty",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"FuseEnsembled: one key holds the members, got keys {list(self.keys)}.")
        self.fuser = FuseEnsemble(num_samples, method, threshold)
        self.uncertainty_key = uncertainty_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key], d[self.uncertainty_key] = self.fuser(d[key])
        return d
