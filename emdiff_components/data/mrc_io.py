"""MRC backend of the reader registry (``.mrc``, ``.mrcs``, ``.map``, ``.rec``): EM images, stacks and tomograms.

Read and written with ``mrcfile`` (Burnley et al. "Recent developments in the CCP-EM software suite", Acta Cryst. D
2017; format: Cheng et al. "MRC2014: Extensions to the MRC format header for electron cryo-microscopy and tomography",
J. Struct. Biol. 2015). Three things are fixed once, at read time, as elf's ``elf/io/mrc_wrapper.py`` fixes the first:

- MRC's first row is the bottom of the image (its origin is the lower left corner); arrays here start at the top
  row, as TIFF and PNG do, so Y is flipped (as IMOD's ``tif2mrc`` / ``mrc2tif`` flip it); writing flips it back.
- ``mapc`` / ``mapr`` / ``maps`` other than 1 / 2 / 3 (axes stored in another order) are transposed to (Z, Y, X).
- Mode 0 is signed bytes in MRC2014, but IMOD (and SerialEM) write unsigned bytes and say so by leaving bit 1 of
  ``imodFlags`` unset under its ``imodStamp``; such files are read as uint8 (``mrcfile`` alone would give int8).

The voxel size comes from the header (``cella / mx`` etc.), in angstrom (0.1 nm), and is returned in nm like the other
backends.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from monai.utils import optional_import

__all__: list[str] = []

logger = logging.getLogger(__name__)

mrcfile, _has_mrcfile = optional_import("mrcfile")

_MRC_EXTENSIONS = (".mrc", ".mrcs", ".map", ".rec")
_ANGSTROM_PER_NM = 10.0
# IMOD's header extension, inside MRC2014's "extra2" bytes (file bytes 152..159): imodStamp, then imodFlags
_IMOD_STAMP, _IMOD_STAMP_OFFSET, _IMOD_SIGNED_BYTES = 1146047817, 152 - 112, 1
# what mrcfile stores: int8 (mode 0), int16 (1), float32 (2), uint16 (6), float16 (12); uint8 it widens to uint16
_WRITABLE_DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.float16, np.float32)


def _open(path: str, opener: Any, mode: str = "r", **kwargs) -> Any:
    """``mrcfile.open`` / ``mmap``; an unknown machine stamp (old SerialEM versions write 0x44 0 0 0 or zeros) is
    retried permissively, with a warning, as elf does; any other header error raises."""
    try:
        return opener(path, mode, **kwargs)
    except ValueError as err:
        if "machine stamp" not in str(err):
            raise ValueError(f"{path!r} is not a valid MRC file: {err}") from err
        handle = opener(path, mode, permissive=True, **kwargs)
        if handle.header is None or (not kwargs.get("header_only") and handle.data is None):
            handle.close()
            raise ValueError(f"{path!r} is not a valid MRC file: {err}") from err
        logger.warning("%s: %s; read permissively (old SerialEM files have such stamps)", path, err)
        return handle


def _imod_unsigned_bytes(header: Any) -> bool:
    """Mode 0 data that IMOD marked as unsigned (its stamp present, its 'signed bytes' flag unset)."""
    if int(header.mode) != 0:
        return False
    order = header.mode.dtype.byteorder
    stamp, flags = np.frombuffer(header.extra2.tobytes(), dtype=np.dtype("i4").newbyteorder(order), count=2,
                                 offset=_IMOD_STAMP_OFFSET)
    return int(stamp) == _IMOD_STAMP and not int(flags) & _IMOD_SIGNED_BYTES


def _zyx_view(handle: Any) -> np.ndarray:
    """The data of an open MRC file as a (Z, Y, X) or (Y, X) view, top row first (see the module docstring)."""
    data = handle.data
    header = handle.header
    if _imod_unsigned_bytes(header):
        data = data.view(np.uint8)
    if data.ndim == 3:
        stored = (int(header.maps), int(header.mapr), int(header.mapc))  # axis (1 = X, 2 = Y, 3 = Z) of each array axis
        if sorted(stored) == [1, 2, 3] and stored != (3, 2, 1):
            data = data.transpose([stored.index(axis) for axis in (3, 2, 1)])
    return np.flip(data, axis=-2) if data.ndim >= 2 else data


def _mrc_read(path: str, key: str | None) -> np.ndarray:
    with _open(path, mrcfile.open) as handle:
        return np.array(_zyx_view(handle))


def _mrc_voxel_size(path: str, key: str | None) -> tuple[float, ...] | None:
    """Header voxel size (angstrom, x y z) in nm: (Z, Y, X) for volumes, (Y, X) for single images; None when unset."""
    with _open(path, mrcfile.open, header_only=True) as handle:
        size = handle.voxel_size
        x, y, z = (float(size.x), float(size.y), float(size.z))
        single_image = int(handle.header.nz) == 1
    if x == 0 and y == 0 and z == 0:  # mrcfile's "cell not set"
        return None
    zyx = (z / _ANGSTROM_PER_NM, y / _ANGSTROM_PER_NM, x / _ANGSTROM_PER_NM)
    return zyx[1:] if single_image else zyx


def _mrc_write(path: str, array: np.ndarray, key: str | None, like: str | None = None) -> None:
    """Write (Y, X) or (Z, Y, X) as MRC2014 with Y flipped back; with an MRC ``like``, its voxel size and origin.

    Raises:
        ValueError: a dtype MRC cannot hold (int32, int64, float64, ...; the message lists the allowed ones).
    """
    if array.dtype.type not in _WRITABLE_DTYPES:
        raise ValueError(
            f"write_image: MRC holds {[np.dtype(t).name for t in _WRITABLE_DTYPES]} (uint8 is stored as uint16), "
            f"not {array.dtype} ({path!r}); cast the array first."
        )
    voxel_size = origin = None
    if like is not None and os.path.splitext(like)[1].lower() in _MRC_EXTENSIONS:
        with _open(like, mrcfile.open, header_only=True) as source:
            voxel_size, origin = source.voxel_size.copy(), source.header.origin.copy()
    with mrcfile.new(path) as handle:
        handle.set_data(np.ascontiguousarray(np.flip(array, axis=-2)))
        if voxel_size is not None:
            handle.voxel_size = voxel_size
            handle.header.origin = origin


def _mrc_open_lazy(path: str, mode: str) -> tuple[Any, np.ndarray, tuple[float, ...] | None]:
    """A memory-mapped MRC file (``mode`` "r" or "r+") for :func:`~emdiff_components.data.open_volume`:
    (handle to close, (Z, Y, X) view, voxel size in nm or None)."""
    handle = _open(path, mrcfile.mmap, mode)
    return handle, _zyx_view(handle), _mrc_voxel_size(path, None)
