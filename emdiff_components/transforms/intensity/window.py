"""One intensity scaling for images with or without a known intensity window (CT in HU, or any EM / PNG image)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, ScaleIntensity, ScaleIntensityRange, Transform
from monai.utils import TransformBackends

__all__ = ["ScaleIntensityWindow", "ScaleIntensityWindowd"]


class ScaleIntensityWindow(Transform):
    """Scale intensities to ``[minv, maxv]``: min-max without a window, clip-and-scale with one.

    With ``intensity_range=None`` each image is min-max scaled on its own (MONAI ``ScaleIntensity``): the choice for
    EM and 8-bit images, whose grey values have no fixed meaning. With ``intensity_range=(a_min, a_max)`` values are
    clipped to that window and mapped linearly to ``[minv, maxv]`` (MONAI ``ScaleIntensityRange`` with
    ``clip=True``): the choice for CT, whose Hounsfield units do (e.g. a lung window ``(-1000, 400)``). One transform
    instead of two switched by ``_disabled_`` in a config.

    Args:
        intensity_range: ``None`` (default: min-max per image) or the window ``(a_min, a_max)``, ``a_min < a_max``.
        minv: output lower end; default -1.
        maxv: output upper end; default 1.

    Returns:
        The image scaled, same shape and type (float).

    Example::

        ScaleIntensityWindow((-1000, 400))(ct)  # -1000 HU -> -1, 400 HU and above -> 1, -300 HU -> 0
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, intensity_range: Sequence[float] | None = None, minv: float = -1.0, maxv: float = 1.0
    ) -> None:
        if not minv < maxv:
            raise ValueError(f"ScaleIntensityWindow: minv must be < maxv, got {minv}, {maxv}.")
        self.intensity_range = None if intensity_range is None else tuple(float(v) for v in intensity_range)
        if self.intensity_range is None:
            self.scaler: Transform = ScaleIntensity(minv=minv, maxv=maxv)
            return
        if len(self.intensity_range) != 2 or not self.intensity_range[0] < self.intensity_range[1]:
            raise ValueError(
                f"ScaleIntensityWindow: intensity_range must be None or (a_min, a_max) with a_min < a_max, "
                f"got {intensity_range!r}."
            )
        a_min, a_max = self.intensity_range
        self.scaler = ScaleIntensityRange(a_min, a_max, minv, maxv, clip=True)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        return self.scaler(img)


class ScaleIntensityWindowd(MapTransform):
    """Dictionary twin of :class:`ScaleIntensityWindow`: same Args, plus ``keys`` and ``allow_missing_keys``."""

    backend = ScaleIntensityWindow.backend

    def __init__(
        self,
        keys: KeysCollection,
        intensity_range: Sequence[float] | None = None,
        minv: float = -1.0,
        maxv: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleIntensityWindow(intensity_range, minv, maxv)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d
