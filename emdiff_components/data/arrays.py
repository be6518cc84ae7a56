"""Volumes on disk read and written region by region (zarr, HDF5, TIFF, NPY; MRC read), for volumes beyond memory.

NeuroDiff (Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation",
https://arxiv.org/abs/2601.15779) segments whole EM volumes; :func:`open_volume` gives a lazily read array and
:func:`create_volume` an output written block by block and renamed onto its final name only at ``close()``, so a killed
run leaves no file that looks complete. The format is picked by extension as in :mod:`.readers` (elf's ``open_file``
registry); paths take ``file.h5:/group/key`` and ``folder.zarr:/group/key``. Geometry travels as a (Z, Y, X) voxel size
in nm: HDF5 / zarr attribute ``resolution``, ImageJ TIFF tags and the MRC header, the same that
:func:`~emdiff_components.data.read_voxel_size` reads back.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import optional_import

from ..utils import atomic_write
from .mrc_io import _MRC_EXTENSIONS, _has_mrcfile, _mrc_open_lazy
from .readers import _H5_EXTENSIONS, ImageReadError, _split_path, _tiff_read, _tiff_voxel_size, attrs_voxel_size

__all__ = ["LazyVolume", "create_volume", "open_volume"]

logger = logging.getLogger(__name__)

tifffile, _has_tifffile = optional_import("tifffile")
h5py, _has_h5py = optional_import("h5py")
zarr, _has_zarr = optional_import("zarr")

_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)  # the only sample types an ImageJ TIFF holds


def _volume_extensions(readable: bool = False) -> tuple[str, ...]:
    """Extensions :func:`create_volume` writes, or with ``readable`` those :func:`open_volume` reads (MRC too)."""
    found = [".npy"]
    found += [".tif", ".tiff"] if _has_tifffile else []
    found += list(_H5_EXTENSIONS) if _has_h5py else []
    found += [".zarr"] if _has_zarr else []
    found += list(_MRC_EXTENSIONS) if readable and _has_mrcfile else []
    return tuple(sorted(found))


def _split_volume_path(path: str | os.PathLike, func: str) -> tuple[str, str | None, str]:
    """(file, internal key or None, extension) of a volume path; raise naming the supported extensions."""
    text = os.fspath(path)
    idx = text.lower().rfind(".zarr:")
    if idx >= 0:
        file, key, ext = text[: idx + 5], text[idx + 6 :].strip("/") or None, ".zarr"
    elif text.rstrip("/\\").lower().endswith(".zarr"):
        file, key, ext = text.rstrip("/\\"), None, ".zarr"
    else:
        file, key, ext = _split_path(text)
        key = key.strip("/") or None if key else None
    extensions = _volume_extensions(readable=func == "open_volume")
    if ext not in extensions:
        raise ImageReadError(
            f"{func}: unsupported volume extension {ext!r} of {text!r}; supported extensions: "
            f"{', '.join(extensions)} (zarr, HDF5, TIFF and MRC need their library installed)."
        )
    return file, key, ext


def _check_voxel_size(size: Sequence[float] | None, where: str) -> tuple[float, ...] | None:
    if size is None:
        return None
    values = tuple(float(v) for v in size)
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        logger.warning("%s: ignoring non-positive voxel size %s", where, values)
        return None
    return values


class LazyVolume:
    """An array on disk, read (and written) region by region with numpy slicing; nothing is loaded whole.

    Made by :func:`open_volume` and :func:`create_volume`, not directly. ``volume[z0:z1, y0:y1, x0:x1]`` returns a numpy
    array read from disk; ``volume[...] = block`` writes (volumes opened with ``mode="r+"`` or created). ``close()``
    (or leaving the ``with`` block) flushes and, for a created volume, renames it onto its final path; an exception in
    the ``with`` block (or ``abort()``) deletes the unfinished output instead.

    Attributes:
        path: the path it was opened or created with.
        shape, dtype, ndim: of the array (after dropping leading singleton axes when ``open_volume`` was asked to).
        voxel_size: (Z, Y, X) in nm from the file's metadata, or None.

    Example::

        with open_volume("raw.h5:/main") as raw:
            block = raw[0:16, 0:160, 0:160]
    """

    def __init__(
        self,
        array: Any,
        path: str,
        stack: contextlib.ExitStack,
        voxel_size: tuple[float, ...] | None = None,
        writable: bool = False,
        lead: int = 0,
    ) -> None:
        self._array, self._stack, self._lead = array, stack, lead
        self.path, self.voxel_size, self.writable = path, voxel_size, writable
        self.shape: tuple[int, ...] = tuple(int(n) for n in array.shape[lead:])
        self.dtype = np.dtype(array.dtype)
        self.closed = False

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _key(self, key: Any) -> tuple:
        if self.closed:
            raise ValueError(f"LazyVolume: {self.path!r} is closed.")
        return (0,) * self._lead + (key if isinstance(key, tuple) else (key,))

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.array(self._array[self._key(key)])  # a copy: a view would outlive a closed memory map

    def __setitem__(self, key: Any, value: Any) -> None:
        if not self.writable:
            raise ValueError(f"LazyVolume: {self.path!r} is read-only (open_volume(..., mode='r+') edits in place).")
        self._array[self._key(key)] = value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Read everything (only for volumes that fit in memory)."""
        return self[...] if dtype is None else self[...].astype(dtype)

    def __repr__(self) -> str:
        return f"LazyVolume({self.path!r}, shape={self.shape}, dtype={self.dtype}, voxel_size={self.voxel_size})"

    def close(self) -> None:
        """Flush and close; a created volume is renamed onto its final path now."""
        if not self.closed:
            self.closed = True
            self._array = None
            self._stack.close()

    def abort(self, error: BaseException | None = None) -> None:
        """Close and delete an unfinished output (a created volume never reaches its final path)."""
        if not self.closed:
            self.closed = True
            self._array = None
            error = error or RuntimeError(f"LazyVolume: writing {self.path!r} was aborted.")
            self._stack.__exit__(type(error), error, error.__traceback__)

    def __enter__(self) -> LazyVolume:  # noqa: PYI034 - typing.Self needs Python 3.11, the package supports 3.10
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        else:
            self.abort(exc)


# ----------------------------------------------------------------------------------------------------- reading
def _open_tiff(file: str, mode: str, stack: contextlib.ExitStack) -> tuple[Any, tuple[float, ...] | None]:
    with tifffile.TiffFile(file) as tif:
        axes = tif.series[0].axes
    try:
        if axes.endswith("S"):  # colour samples: reduced to grey by read_image's TIFF reader
            raise ValueError("colour TIFF")
        array = tifffile.memmap(file, mode=mode)
        stack.callback(array.flush) if mode == "r+" else None
    except ValueError as err:
        if mode == "r+":
            raise ImageReadError(
                f"open_volume: {file!r} cannot be edited in place ({err}); write a new volume."
            ) from err
        logger.info("open_volume: TIFF %s is compressed or not contiguous, so it is read into memory", file)
        array = _tiff_read(file, None)
    if axes == "ZCYX":  # an ImageJ hyperstack stores channels inside each slice; the package uses (C, Z, Y, X)
        array = np.moveaxis(array, 1, 0)
    return array, _tiff_voxel_size(file, None)


def _h5_names(handle: Any) -> list[str]:
    names: list[str] = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _open_h5(file: str, key: str | None, mode: str, stack: contextlib.ExitStack) -> tuple[Any, Any]:
    handle = stack.enter_context(h5py.File(file, mode))
    names = _h5_names(handle)
    if key is None and not names:
        raise ImageReadError(f"open_volume: {file!r} holds no dataset.")
    if key is not None and not (key in handle and isinstance(handle[key], h5py.Dataset)):
        raise ImageReadError(f"open_volume: {file!r} has no dataset {key!r}; available datasets: {names}.")
    dataset = handle[key if key is not None else names[0]]
    return dataset, attrs_voxel_size(dataset.attrs)


def _zarr_names(group: Any) -> list[str]:
    return sorted(name for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array))


def _open_zarr(file: str, key: str | None, mode: str) -> tuple[Any, Any]:
    node = zarr.open(store=file, mode=mode)
    if isinstance(node, zarr.Array):
        if key is not None:
            raise ImageReadError(f"open_volume: {file!r} is a single zarr array; it has no {key!r} inside.")
        return node, attrs_voxel_size(node.attrs)
    names = _zarr_names(node)
    if key is None and not names:
        raise ImageReadError(f"open_volume: zarr group {file!r} holds no array.")
    if key is not None and key not in names:
        raise ImageReadError(f"open_volume: {file!r} has no zarr array {key!r}; available arrays: {names}.")
    array = node[key if key is not None else names[0]]
    return array, attrs_voxel_size(array.attrs)


def open_volume(path: str | os.PathLike, mode: str = "r", ndim: int | None = None) -> LazyVolume:
    """Open a volume on disk as a lazily read array: only the regions sliced are read.

    zarr arrays and HDF5 datasets are read chunk by chunk, NPY, uncompressed TIFF and MRC through a memory map; a
    compressed TIFF cannot be mapped and is read whole into memory (one log line says so). An ImageJ hyperstack stored
    (Z, C, Y, X) is seen as (C, Z, Y, X); MRC as :func:`~emdiff_components.data.read_image` gives it (Y flipped so the
    first row is the top one; a view, so ``mode="r+"`` writes go to the right voxels).

    Args:
        path: ``.zarr`` folder (``folder.zarr:/group/key`` for an array inside a group; without a key, the first array in
            depth-first order), ``.h5`` / ``.hdf5`` (``file.h5:/group/key``; without a key, the first dataset),
            ``.tif`` / ``.tiff``, ``.npy`` or ``.mrc`` / ``.mrcs`` / ``.map`` / ``.rec``.
        mode: ``"r"`` (default) or ``"r+"`` (write in place; not for compressed TIFF).
        ndim: the number of axes required, e.g. 3 for a (Z, Y, X) volume; leading singleton axes beyond it are dropped
            (a (1, Z, Y, X) file opens as (Z, Y, X)). Default None: any.

    Returns:
        :class:`LazyVolume`; close it (or use ``with``).

    Raises:
        ImageReadError: missing file, unknown extension (the message lists the supported ones), missing HDF5 / zarr key
            (the message lists the available ones), a file that cannot be decoded, or fewer / more axes than ``ndim``.
        ValueError: ``mode`` other than "r" / "r+".
    """
    if mode not in ("r", "r+"):
        raise ValueError(f"open_volume: mode must be 'r' or 'r+', got {mode!r}.")
    file, key, ext = _split_volume_path(path, "open_volume")
    if not os.path.exists(file):
        raise ImageReadError(f"open_volume: {file!r} does not exist.")
    stack = contextlib.ExitStack()
    try:
        if ext == ".zarr":
            array, size = _open_zarr(file, key, mode)
        elif ext in _H5_EXTENSIONS:
            array, size = _open_h5(file, key, mode, stack)
        elif ext == ".npy":
            array, size = np.load(file, mmap_mode=mode, allow_pickle=False), None
            stack.callback(array.flush) if mode == "r+" else None
        elif ext in _MRC_EXTENSIONS:
            handle, array, size = _mrc_open_lazy(file, mode)
            stack.callback(handle.close)
        else:
            array, size = _open_tiff(file, mode, stack)
        shape = tuple(array.shape)
        lead = 0
        if ndim is not None:
            while len(shape) - lead > ndim and shape[lead] == 1:
                lead += 1
            if len(shape) - lead != ndim:
                raise ImageReadError(
                    f"open_volume: {os.fspath(path)!r} is {len(shape)}D with shape {shape}; a {ndim}D "
                    f"{'(Z, Y, X) ' if ndim == 3 else ''}array is needed."
                )
    except ImageReadError:
        stack.close()
        raise
    except Exception as err:
        stack.close()
        raise ImageReadError(f"open_volume: cannot open {os.fspath(path)!r}: {type(err).__name__}: {err}") from err
    return LazyVolume(array, os.fspath(path), stack, _check_voxel_size(size, os.fspath(path)), mode == "r+", lead)


# ----------------------------------------------------------------------------------------------------- writing
@contextlib.contextmanager
def _atomic_directory(final: Path) -> Iterator[Path]:
    """:func:`~emdiff_components.utils.atomic_write` for a folder (a zarr array): rename on success, delete on error."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():  # os.replace cannot replace a non-empty folder: move the old one aside first
            aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, aside / "old")
            os.replace(tmp, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _create_zarr(file, key, shape, dtype, chunks, size, stack) -> Any:
    final = Path(file)
    if key is not None:  # the array is a folder inside the group: make the groups, write a sibling, rename
        group, parent = zarr.open_group(store=file, mode="a"), key.rpartition("/")[0]
        if parent:
            group.require_group(parent)
        final = final / key
    tmp = stack.enter_context(_atomic_directory(final))
    array = zarr.create_array(store=str(tmp), shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True)
    if size is not None:
        array.attrs["resolution"] = list(size)
    return array


def _create_h5(file, key, shape, dtype, chunks, size, stack) -> Any:
    # the temporary file starts as a copy of an existing target so that its other datasets survive
    tmp = stack.enter_context(atomic_write(file, keep_existing=key is not None))
    handle = stack.enter_context(h5py.File(tmp, "a"))
    key = key or "data"
    if key in handle:
        del handle[key]
    dataset = handle.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks, compression="gzip")
    if size is not None:
        dataset.attrs["resolution"] = np.asarray(size, dtype=np.float64)
    return dataset


def _create_tiff(file, shape, dtype, size, stack) -> tuple[Any, tuple[float, ...] | None]:
    tmp = stack.enter_context(atomic_write(file))
    kwargs: dict[str, Any] = {"photometric": "minisblack"}
    stored = tuple(shape)
    if dtype.type in _IMAGEJ_DTYPES and len(shape) <= 4:
        # ImageJ orders hyperstacks (Z, C, Y, X); the caller sees (C, Z, Y, X) through a transposed view
        stored = (shape[1], shape[0], *shape[2:]) if len(shape) == 4 else stored
        axes = {2: "YX", 3: "ZYX", 4: "ZCYX"}[len(shape)]
        kwargs.update(imagej=True, metadata={"axes": axes})
        if size is not None and len(size) >= 2:  # without a unit, the default resolution 1 / 1 is not read as 1 nm
            kwargs["resolution"] = (1.0 / size[-1], 1.0 / size[-2])
            kwargs["metadata"].update(unit="nm", **({"spacing": size[-3]} if len(size) >= 3 else {}))
    elif size is not None:
        logger.warning("create_volume: %s drops the voxel size: an ImageJ TIFF holds only uint8, uint16, float32", file)
        size = None
    array = tifffile.memmap(str(tmp), shape=stored, dtype=dtype, **kwargs)
    stack.callback(array.flush)
    return (np.moveaxis(array, 1, 0) if stored != tuple(shape) else array), size


def create_volume(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype: Any = np.float32,
    chunks: Sequence[int] | None = None,
    like: str | os.PathLike | LazyVolume | None = None,
    voxel_size: Sequence[float] | None = None,
) -> LazyVolume:
    """Create a volume on disk, zero-filled, to be written region by region and renamed into place at ``close()``.

    The data go to a hidden temporary name beside ``path`` (``.name.XXXX.ext``); ``close()`` renames it onto ``path``
    (replacing an existing one), an exception inside ``with create_volume(...)`` or ``abort()`` deletes it, so a crash
    never leaves a complete-looking file. ``file.h5:/key`` keeps the other datasets of an existing file;
    ``folder.zarr:/group/key`` keeps the other arrays of an existing group.

    Args:
        path: ``.zarr`` (chunked, zarr's default compression; attribute ``resolution``), ``.h5`` / ``.hdf5``
            (chunked, gzip; attribute ``resolution``; key default ``data``), ``.tif`` / ``.tiff`` (uncompressed, memory
            mapped; ImageJ hyperstack for uint8 / uint16 / float32 with ``unit``, ``spacing`` and resolution tags; a
            singleton channel is not kept, so (1, Z, Y, X) reopens as (Z, Y, X), as :func:`read_image` squeezes) or
            ``.npy`` (memory mapped; no geometry).
        shape: e.g. (C, Z, Y, X) for affinities or (Z, Y, X).
        dtype: numpy dtype, default float32.
        chunks: zarr / HDF5 chunk shape (clipped to ``shape``), e.g. (C, *block_shape) to match blockwise writes.
            Default None: the library's choice.
        like: a volume (path or :class:`LazyVolume`) whose voxel size the output takes. Default None.
        voxel_size: (Z, Y, X) in nm, overriding ``like``. Default None.

    Returns:
        writable :class:`LazyVolume` with ``voxel_size`` set to what was stored.

    Raises:
        ImageReadError: unknown extension (listing the supported ones), ``like`` cannot be opened.
        ValueError: ``shape`` or ``chunks`` not positive ints.
    """
    file, key, ext = _split_volume_path(path, "create_volume")
    shape = tuple(shape)
    if not shape or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in shape):
        raise ValueError(f"create_volume: shape must be positive ints, got {shape!r} for {os.fspath(path)!r}.")
    shape = tuple(int(n) for n in shape)
    if chunks is not None:
        if len(chunks) != len(shape) or not all(isinstance(c, (int, np.integer)) and c >= 1 for c in chunks):
            raise ValueError(f"create_volume: chunks must be {len(shape)} positive ints, got {chunks!r}.")
        chunks = tuple(min(int(c), n) for c, n in zip(chunks, shape))
    dtype = np.dtype(np.uint8 if np.dtype(dtype) == bool else dtype)
    if voxel_size is None and like is not None:
        if isinstance(like, LazyVolume):
            voxel_size = like.voxel_size
        else:
            with open_volume(like) as source:
                voxel_size = source.voxel_size
    size = _check_voxel_size(voxel_size, os.fspath(path))
    stack = contextlib.ExitStack()
    try:
        if ext == ".zarr":
            array = _create_zarr(file, key, shape, dtype, chunks or "auto", size, stack)
        elif ext in _H5_EXTENSIONS:
            array = _create_h5(file, key, shape, dtype, chunks, size, stack)
        elif ext == ".npy":
            tmp = stack.enter_context(atomic_write(file))
            array = np.lib.format.open_memmap(str(tmp), mode="w+", dtype=dtype, shape=shape)
            stack.callback(array.flush)
            size = None
        else:
            array, size = _create_tiff(file, shape, dtype, size, stack)
    except BaseException as err:
        stack.__exit__(type(err), err, err.__traceback__)
        raise
    return LazyVolume(array, os.fspath(path), stack, size, writable=True)
