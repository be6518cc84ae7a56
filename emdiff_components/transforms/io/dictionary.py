"""Dictionary twin of :class:`LoadSlice`: replaces file paths in a datalist entry by (1, Y, X) slices."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from emdiff_components.data.readers import read_voxel_size

from .array import LoadSlice, LoadVolume

__all__ = ["LoadSliced", "LoadVolumed", "pixel_spacing_mm"]

_NM_PER_MM = 1e6


def pixel_spacing_mm(path: str | os.PathLike) -> np.ndarray:
    """In-plane pixel size ``(y, x)`` in mm of an image file, ``[nan, nan]`` where its metadata states none."""
    size = read_voxel_size(path)
    if size is None:
        return np.full(2, np.nan)
    return np.asarray(size[-2:], dtype=np.float64) / _NM_PER_MM


class LoadSliced(MapTransform):
    """Load slice ``d[slice_key]`` of every file named under ``keys``; label keys get class indices.

    Design: one :class:`LoadSlice` (and so one file cache, shared by images and labels) reads every key; keys listed
    in ``label_keys`` are loaded with their ``num_classes`` (int64 class indices, ``> 0 -> 1`` when binary), the
    others as images in ``dtype``. The path string of each key is kept under ``"<key>_path"`` for the writers; other
    keys (``"name"``, ``"slice"``, ``"num_slices"``) pass through. A missing ``slice_key`` means slice 0 (2D files).

    Args:
        keys: keys holding file paths, e.g. ``("image", "label")``.
        slice_key: key of the slice index, default ``"slice"``.
        label_keys: which of ``keys`` are labels, default ``("label",)``; ``()`` loads every key as an image.
        num_classes: class count of the label keys: an int (all label keys, default 2) or a dict per label key.
        dtype: image dtype, default ``np.float32``.
        cache_size: files kept by the shared cache, default 4 (an image/label pair of two stacks takes 2).
        spacing_key: when set, the in-plane pixel size ``(y, x)`` in millimetres of the first key's file (from
            :func:`emdiff_components.data.read_voxel_size`) is stored under this key as a float64 array, NaN where
            the file states none (so that batches still collate); default None (not stored).
        allow_missing_keys: skip keys missing from the data instead of raising ``KeyError``.

    Example:
        >>> load = LoadSliced(keys=("image", "label"), num_classes=2)
        >>> out = load({"image": "vol.tif", "label": "mito.tif", "slice": 3, "name": "vol"})
        >>> out["image"].shape, out["label"].dtype, out["image_path"]
        ((1, 512, 512), dtype('int64'), 'vol.tif')
    """

    def __init__(
        self,
        keys: KeysCollection,
        slice_key: str = "slice",
        label_keys: Sequence[str] | str = ("label",),
        num_classes: int | Mapping[str, int] | None = 2,
        dtype: np.dtype | type | str = np.float32,
        cache_size: int = 4,
        spacing_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        name = type(self).__name__
        label_keys = (label_keys,) if isinstance(label_keys, str) else tuple(label_keys)
        unknown = [k for k in label_keys if k not in self.keys]
        if unknown:
            raise ValueError(f"{name}: label_keys {unknown} are not among keys {list(self.keys)}.")
        if isinstance(num_classes, Mapping):
            extra = [k for k in num_classes if k not in label_keys]
            if extra:
                raise ValueError(f"{name}: num_classes names keys {extra} that are not label_keys {list(label_keys)}.")
            per_key = {k: num_classes.get(k) for k in label_keys}
        else:
            per_key = {k: num_classes for k in label_keys}
        self.slice_key = slice_key
        self.spacing_key = spacing_key
        self.loader = LoadSlice(num_classes=None, dtype=dtype, cache_size=cache_size)
        # validate through LoadSlice's own check so both classes reject the same values
        self.num_classes = {k: LoadSlice._check_num_classes(v, name) for k, v in per_key.items()}

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        slice_index = d.get(self.slice_key, 0)
        if isinstance(slice_index, np.ndarray) and slice_index.size == 1:
            slice_index = slice_index.item()
        for key in self.key_iterator(d):
            path = d[key]
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(
                    f"{type(self).__name__}: d[{key!r}] must be a file path, got {type(path).__name__} "
                    "(was it loaded twice?)."
                )
            d[f"{key}_path"] = os.fspath(path)
            if self.spacing_key is not None and self.spacing_key not in d:
                d[self.spacing_key] = pixel_spacing_mm(path)
            if key in self.num_classes:
                d[key] = self.loader(path, slice_index, num_classes=self.num_classes[key])
            else:
                d[key] = self.loader(path, slice_index)
        return d


class LoadVolumed(MapTransform):
    """Dictionary twin of :class:`LoadVolume`: replaces the file path under each key by its ``(1, Z, Y, X)`` volume.

    The path of each key is kept under ``"<key>_path"`` (error messages and writers name the file).

    Args:
        keys: keys holding file paths, e.g. ``("image", "label", "mito")``.
        dtype: one dtype for every key (default ``np.float32``) or a dict key -> dtype, e.g.
            ``{"image": "float32", "label": "int64", "mito": "uint8"}``.
        allow_missing_keys: skip keys missing from the data (an optional mitochondria mask) instead of raising.
    """

    def __init__(
        self,
        keys: KeysCollection,
        dtype: np.dtype | type | str | Mapping[str, np.dtype | type | str] = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        per_key = dtype if isinstance(dtype, Mapping) else {k: dtype for k in self.keys}
        missing = [k for k in self.keys if k not in per_key]
        if missing:
            raise ValueError(f"LoadVolumed: no dtype for keys {missing}.")
        self.loaders = {k: LoadVolume(per_key[k]) for k in self.keys}

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"LoadVolumed: d[{key!r}] must be a file path, got {type(path).__name__}.")
            d[f"{key}_path"] = os.fspath(path)
            d[key] = self.loaders[key](path)
        return d
