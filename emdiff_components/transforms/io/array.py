"""Load one 2D slice of an image file or (Z, Y, X) stack as a channel-first array, with a small file cache."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np
from monai.transforms import Transform

from emdiff_components.data.readers import read_image

__all__ = ["LoadSlice", "LoadVolume"]

_UNSET = object()


class LoadSlice(Transform):
    """Read slice ``slice_index`` of a 2D image or (Z, Y, X) stack and return it channel-first, ``(1, Y, X)``.

    Datalists from :func:`emdiff_components.data.segmentation_datalist` hold one entry per slice, so a 30-slice stack
    is asked for 30 times; a per-instance LRU cache of whole files (``cache_size`` files, default 4) makes that one
    read. The cache is dropped when the transform is pickled (DataLoader workers start with an empty one), and a
    file whose modification time changed is read again.

    Images are cast to ``dtype``. Labels (``num_classes`` set) come back as int64 class indices: for
    ``num_classes == 2`` every value > 0 becomes 1 (so 0/255 masks work); otherwise values must lie in
    0..num_classes-1.

    Args:
        num_classes: None (default) for images; the class count (>= 2) for labels.
        dtype: output dtype for images, default ``np.float32`` (ignored for labels, which are int64).
        cache_size: how many whole files to keep, default 4 (>= 0; 0 disables the cache).

    Returns:
        ``np.ndarray`` of shape (1, Y, X).

    Example:
        >>> load = LoadSlice()
        >>> load("train-volume.tif", slice_index=3).shape
        (1, 512, 512)
        >>> LoadSlice(num_classes=2)("train-mito.tif", 3).dtype
        dtype('int64')
    """

    def __init__(self, num_classes: int | None = None, dtype: np.dtype | type | str = np.float32, cache_size: int = 4):
        name = type(self).__name__
        self.num_classes = self._check_num_classes(num_classes, name)
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as err:
            raise TypeError(f"{name}: dtype {dtype!r} is not a numpy dtype.") from err
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"{name}: cache_size must be an int >= 0, got {cache_size!r}.")
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _check_num_classes(num_classes, name: str) -> int | None:
        if num_classes is None:
            return None
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"{name}: num_classes must be None or an int >= 2, got {num_classes!r}.")
        return int(num_classes)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _read(self, path: str) -> np.ndarray:
        """Whole file through the LRU cache, keyed by absolute path and modification time."""
        key = (os.path.abspath(path), _mtime(path))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        array = read_image(path)
        if self.cache_size:
            with self._lock:
                self._cache[key] = array
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return array

    def __call__(self, path: str | os.PathLike, slice_index: int = 0, num_classes=_UNSET) -> np.ndarray:
        """Load one slice.

        Args:
            path: image or stack file (any format of :func:`emdiff_components.data.read_image`).
            slice_index: slice of a (Z, Y, X) stack, default 0; 2D files accept only 0.
            num_classes: per-call override of the constructor's ``num_classes`` (the dictionary twin uses one
                instance, and so one cache, for images and labels).

        Returns:
            (1, Y, X) array: ``dtype`` for images, int64 for labels.

        Raises:
            ValueError: slice index out of range, or label values outside 0..num_classes-1.
            emdiff_components.data.ImageReadError: the file cannot be read.
        """
        name = type(self).__name__
        classes = self.num_classes if num_classes is _UNSET else self._check_num_classes(num_classes, name)
        path = os.fspath(path)
        if isinstance(slice_index, bool) or not isinstance(slice_index, (int, np.integer)):
            raise TypeError(f"{name}: slice_index must be an int, got {slice_index!r} for {path!r}.")
        array = self._read(path)
        depth = 1 if array.ndim == 2 else array.shape[0]
        if not 0 <= slice_index < depth:
            raise ValueError(f"{name}: slice_index {slice_index} is out of range 0..{depth - 1} for {path!r}.")
        plane = array if array.ndim == 2 else array[int(slice_index)]
        if classes is None:
            return plane.astype(self.dtype)[None]
        if classes == 2:
            return (plane > 0).astype(np.int64)[None]
        out = plane.astype(np.int64)
        if out.min() < 0 or out.max() >= classes:
            bad = sorted({int(v) for v in np.unique(out) if not 0 <= v < classes})
            raise ValueError(
                f"{name}: label {path!r} slice {slice_index} has values {bad[:20]} outside 0..{classes - 1}."
            )
        return out[None]


def _mtime(path: str) -> int:
    """Modification time (ns) of the file part of ``path`` (``file.h5:/key`` -> ``file.h5``); -1 if unknown."""
    lower = path.lower()
    for ext in (".h5:", ".hdf5:"):
        idx = lower.rfind(ext)
        if idx >= 0:
            path = path[: idx + len(ext) - 1]
            break
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


class LoadVolume(Transform):
    """Read a whole (Z, Y, X) volume and return it channel-first, ``(1, Z, Y, X)``, in ``dtype``.

    For 3D models (NeuroDiff): EM volumes, neuron instance labels (keep an integer ``dtype``: ids are arbitrary) and
    mitochondria masks. Any format of :func:`emdiff_components.data.read_image`.

    Args:
        dtype: output dtype, default ``np.float32``; use ``np.int64`` for instance labels.

    Raises:
        ValueError: the file is not 3D (a 2D image where a volume is needed).
        emdiff_components.data.ImageReadError: the file cannot be read.

    Example:
        >>> LoadVolume(np.int64)("neuron_ids.tif").shape
        (1, 64, 250, 250)
    """

    def __init__(self, dtype: np.dtype | type | str = np.float32) -> None:
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as err:
            raise TypeError(f"LoadVolume: dtype {dtype!r} is not a numpy dtype.") from err

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        array = read_image(path)
        if array.ndim != 3:
            raise ValueError(f"LoadVolume: {os.fspath(path)!r} has shape {array.shape}; a (Z, Y, X) volume is needed.")
        return array.astype(self.dtype, copy=False)[None]
