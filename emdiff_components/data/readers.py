"""Extension-keyed image readers and writers that return arrays in (Z, Y, X) or (Y, X) order.

The registry follows elf's ``open_file`` (``elf/io/files.py``): each file extension maps to a backend, and only
backends whose library imports are registered, so ``import emdiff_components`` needs neither OpenCV nor tifffile,
h5py, nibabel, itk nor mrcfile. Axis order is fixed once, here and in the ITK / MRC backends (:mod:`.itk_io`,
:mod:`.mrc_io`; NIfTI is stored (X, Y, Z), MRC bottom row first); no later code reorders axes. A folder is read as one
DICOM series (through ITK).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from monai.utils import optional_import

from ..utils import atomic_write
from .itk_io import (
    _DETACHED_HEADERS,
    _ITK_EXTENSIONS,
    _has_itk,
    _itk_read,
    _itk_voxel_size,
    _itk_write,
    is_dicom_series,
)
from .mrc_io import _MRC_EXTENSIONS, _has_mrcfile, _mrc_read, _mrc_voxel_size, _mrc_write

__all__ = ["ImageReadError", "output_extension", "read_image", "read_voxel_size", "supported_extensions", "write_image"]

logger = logging.getLogger(__name__)

cv2, _has_cv2 = optional_import("cv2")
tifffile, _has_tifffile = optional_import("tifffile")
h5py, _has_h5py = optional_import("h5py")
nib, _has_nib = optional_import("nibabel")

# nanometres per unit, for TIFF / ImageJ / NIfTI unit names
_UNIT_TO_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "\u03bcm": 1e3,
    "\\u00b5m": 1e3,  # ImageJ sometimes stores the micro sign escaped
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "cm": 1e7,
    "centimeter": 1e7,
    "inch": 2.54e7,
    "m": 1e9,
    "meter": 1e9,
}
_H5_EXTENSIONS = (".h5", ".hdf5")


class ImageReadError(ValueError):
    """A file could not be read as an image; the message names the file and the problem."""


@dataclass(frozen=True)
class _Backend:
    read: Callable[[str, str | None], np.ndarray]
    write: Callable[[str, np.ndarray, str | None, str | None], None]  # (path, array, internal key, like)
    voxel_size: Callable[[str, str | None], tuple[float, ...] | None]


def _split_path(path: str | os.PathLike) -> tuple[str, str | None, str]:
    """Split ``file.h5:/group/dataset`` into (file, internal key, extension); other paths have key None."""
    text = os.fspath(path)
    lower = text.lower()
    for ext in _H5_EXTENSIONS:
        marker = ext + ":"
        idx = lower.rfind(marker)
        if idx >= 0:
            return text[: idx + len(ext)], text[idx + len(marker) :] or None, ext
    for ext in sorted(_REGISTRY, key=len, reverse=True):
        if lower.endswith(ext):
            return text, None, ext
    if lower.endswith(".nii.gz"):  # name the whole extension even when nibabel is missing
        return text, None, ".nii.gz"
    return text, None, os.path.splitext(lower)[1] or lower


# ----------------------------------------------------------------------------------------------------- TIFF
def _tiff_read(path: str, key: str | None) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        array = series.asarray()
        if series.axes.endswith("S") and array.shape[-1] in (3, 4):
            array = _to_grey(array, bgr=False)
    return array


def _tiff_write(path: str, array: np.ndarray, key: str | None, like: str | None = None) -> None:
    # minisblack: without it tifffile stores a 3- or 4-slice stack as one RGB(A) image
    tifffile.imwrite(path, array, compression="zlib", photometric="minisblack")


def _tiff_voxel_size(path: str, key: str | None) -> tuple[float, ...] | None:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        series = tif.series[0]
        ndim = len([n for n, axis in zip(series.shape, series.axes) if n != 1 and axis != "S"])
        meta = tif.imagej_metadata or {}
        tags = page.tags
        xres, yres = tags.get("XResolution"), tags.get("YResolution")
        res_unit = tags.get("ResolutionUnit")
        unit = meta.get("unit")
        if unit is None and res_unit is not None:
            unit = {2: "inch", 3: "cm"}.get(int(res_unit.value))
        if unit is None or xres is None or yres is None:
            return None
        scale = _UNIT_TO_NM.get(str(unit).strip().lower())
        if scale is None:
            return None
        x = scale * xres.value[1] / xres.value[0]
        y = scale * yres.value[1] / yres.value[0]
        if ndim < 3:
            return (y, x)
        if "spacing" in meta:
            return (scale * float(meta["spacing"]), y, x)
        # ImageJ omits "spacing" when the voxel depth is 1 unit; other writers give no z information at all
        return (scale, y, x) if tif.is_imagej else None


# ------------------------------------------------------------------------------------------ PNG / JPEG / BMP
def _to_grey(array: np.ndarray, bgr: bool) -> np.ndarray:
    """Reduce a (..., C) colour array to grey: channel 0 when the colour channels agree, luminance otherwise."""
    colour = array[..., :3] if array.shape[-1] >= 3 else array[..., :1]
    if all(np.array_equal(colour[..., 0], colour[..., c]) for c in range(1, colour.shape[-1])):
        return np.ascontiguousarray(array[..., 0])
    # ITU-R BT.601 weights, the same as cv2.COLOR_BGR2GRAY, applied in float then rounded back to the input dtype
    weights = np.array([0.114, 0.587, 0.299] if bgr else [0.299, 0.587, 0.114])
    grey = colour.astype(np.float64) @ weights
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        grey = np.clip(np.rint(grey), info.min, info.max)
    return grey.astype(array.dtype)


def _cv2_read(path: str, key: str | None) -> np.ndarray:
    array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ImageReadError(f"read_image: OpenCV could not decode {path!r}.")
    if array.ndim == 3:
        array = _to_grey(array, bgr=True)
    return array


def _cv2_write(path: str, array: np.ndarray, key: str | None, like: str | None = None) -> None:
    ext = os.path.splitext(path)[1].lower()
    allowed = (np.uint8, np.uint16) if ext == ".png" else (np.uint8,)
    if array.ndim != 2 or array.dtype.type not in allowed:
        raise ValueError(
            f"write_image: {ext} holds a 2D array of dtype {[np.dtype(t).name for t in allowed]}; got shape "
            f"{array.shape} dtype {array.dtype} for {path!r} (use .tif for stacks or other dtypes)."
        )
    if not cv2.imwrite(path, array):
        raise OSError(f"write_image: OpenCV could not write {path!r}.")


# ----------------------------------------------------------------------------------------------------- NIfTI
def _nifti_read(path: str, key: str | None) -> np.ndarray:
    # dataobj keeps the stored dtype (get_fdata would always give float64); NIfTI is (X, Y, Z): reverse to (Z, Y, X)
    return np.asanyarray(nib.load(path).dataobj).T


def _nifti_write(path: str, array: np.ndarray, key: str | None, like: str | None = None) -> None:
    if like is not None and _has_itk and _itk_geometry_source(like):
        _itk_write(path, array, key, like)  # ITK turns the source's LPS direction into NIfTI's RAS qform / sform
        return
    affine, header = np.eye(4), None
    if like is not None and _split_path(like)[2] in (".nii", ".nii.gz"):  # a CT mask keeps orientation, spacing, units
        source = nib.load(like)
        affine, header = source.affine, source.header.copy()
        header.set_data_dtype(array.dtype)
        header.set_slope_inter(1, 0)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(array.T), affine=affine, header=header), path)


def _nifti_voxel_size(path: str, key: str | None) -> tuple[float, ...] | None:
    header = nib.load(path).header
    space_unit = header.get_xyzt_units()[0]
    # NIfTI's "unknown" spatial unit is read as millimetres, as nibabel and MONAI do
    scale = {"unknown": 1e6, "mm": 1e6, "micron": 1e3, "meter": 1e9}.get(space_unit)
    shape = header.get_data_shape()
    zooms = [float(z) * scale for z, n in zip(header.get_zooms(), shape) if n != 1]
    return tuple(reversed(zooms)) if scale is not None and zooms else None


# ------------------------------------------------------------------------------------- ITK (MHA, NRRD, DICOM)
def _itk_geometry_source(like: str | os.PathLike) -> bool:
    """Whether ITK can give ``like``'s spacing, origin and direction: a DICOM series folder or an ITK file format."""
    file, key, ext = _split_path(like)
    return key is None and (os.path.isdir(file) or ext in _ITK_EXTENSIONS)


def _itk_write_like(path: str, array: np.ndarray, key: str | None, like: str | None = None) -> None:
    """ITK writer taking the geometry of a ``like`` that has one (ITK formats, DICOM folders, NIfTI); others ignored."""
    has_geometry = like is not None and (_itk_geometry_source(like) or _split_path(like)[2] in (".nii", ".nii.gz"))
    _itk_write(path, array, key, like if has_geometry else None)


# ------------------------------------------------------------------------------------------------------ HDF5
def _h5_dataset(handle, key: str | None, path: str):
    if key is not None:
        if key not in handle:
            raise ImageReadError(f"read_image: {path!r} has no dataset {key!r}.")
        return handle[key]
    found: list[str] = []
    handle.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    if not found:
        raise ImageReadError(f"read_image: {path!r} holds no dataset.")
    return handle[found[0]]


def _h5_read(path: str, key: str | None) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        return _h5_dataset(handle, key, path)[()]


def _h5_write(path: str, array: np.ndarray, key: str | None, like: str | None = None) -> None:
    # the temp file starts as a copy of an existing target so that other datasets in it survive
    with h5py.File(path, "a") as handle:
        key = key or "data"
        if key in handle:
            del handle[key]
        handle.create_dataset(key, data=array, compression="gzip")


def attrs_voxel_size(attrs) -> tuple[float, ...] | None:
    """Voxel size (nm, ZYX) from HDF5 / zarr attributes: ``voxel_size`` or ``resolution`` (CREMI; nm, ZYX), else
    ``element_size_um`` (Fiji HDF5 plugin; um); None without any."""
    for attr, scale in (("voxel_size", 1.0), ("resolution", 1.0), ("element_size_um", 1e3)):
        if attr in attrs:
            return tuple(float(v) * scale for v in np.atleast_1d(attrs[attr]))
    return None


def _h5_voxel_size(path: str, key: str | None) -> tuple[float, ...] | None:
    with h5py.File(path, "r") as handle:
        return attrs_voxel_size(_h5_dataset(handle, key, path).attrs)


# ------------------------------------------------------------------------------------------------------- NPY
def _npy_read(path: str, key: str | None) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _npy_write(path: str, array: np.ndarray, key: str | None, like: str | None = None) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _no_voxel_size(path: str, key: str | None) -> None:
    return None


_REGISTRY: dict[str, _Backend] = {".npy": _Backend(_npy_read, _npy_write, _no_voxel_size)}
if _has_tifffile:
    for _ext in (".tif", ".tiff"):
        _REGISTRY[_ext] = _Backend(_tiff_read, _tiff_write, _tiff_voxel_size)
if _has_cv2:
    for _ext in (".png", ".jpg", ".jpeg", ".bmp"):
        _REGISTRY[_ext] = _Backend(_cv2_read, _cv2_write, _no_voxel_size)
if _has_nib:
    for _ext in (".nii", ".nii.gz"):
        _REGISTRY[_ext] = _Backend(_nifti_read, _nifti_write, _nifti_voxel_size)
if _has_h5py:
    for _ext in _H5_EXTENSIONS:
        _REGISTRY[_ext] = _Backend(_h5_read, _h5_write, _h5_voxel_size)
if _has_itk:
    for _ext in _ITK_EXTENSIONS:
        _REGISTRY[_ext] = _Backend(_itk_read, _itk_write_like, _itk_voxel_size)
if _has_mrcfile:
    for _ext in _MRC_EXTENSIONS:
        _REGISTRY[_ext] = _Backend(_mrc_read, _mrc_write, _mrc_voxel_size)
# a folder is one DICOM series; it has no extension, so it sits beside the registry
_DICOM_SERIES = _Backend(_itk_read, _itk_write_like, _itk_voxel_size) if _has_itk else None


def supported_extensions() -> tuple[str, ...]:
    """The file extensions whose backend library is importable here, sorted (e.g. ``(".bmp", ".h5", ...)``)."""
    return tuple(sorted(_REGISTRY))


def _backend(path: str | os.PathLike, func: str) -> tuple[_Backend, str, str | None]:
    file, key, ext = _split_path(path)
    # a folder is a DICOM series; one named like a format (``volume.zarr``) gets the extension error below
    if key is None and os.path.isdir(file) and (is_dicom_series(file) or not os.path.splitext(file)[1]):
        if not is_dicom_series(file):
            raise ImageReadError(
                f"{func}: folder {file!r} holds no DICOM files (*.dcm, or files with the DICM preamble); a folder is "
                "read as one DICOM series."
            )
        if _DICOM_SERIES is None:
            raise ImageReadError(f"{func}: {file!r} is a DICOM series folder; reading it needs itk (pip install itk).")
        return _DICOM_SERIES, file, None
    if ext not in _REGISTRY:
        missing = "itk" if ext in _ITK_EXTENSIONS else "mrcfile" if ext in _MRC_EXTENSIONS else None
        raise ImageReadError(
            f"{func}: unsupported file extension {ext!r} of {os.fspath(path)!r}; "
            f"supported extensions: {', '.join(supported_extensions())}"
            + (" (and folders holding a DICOM series)." if _has_itk else ".")
            + (f" {ext} needs {missing} (pip install {missing})." if missing else "")
        )
    return _REGISTRY[ext], file, key


def output_extension(path: str | os.PathLike) -> str:
    """The extension of a file written from (e.g. a mask predicted for) the image at ``path``: its own, except where
    :func:`write_image` cannot write that format: ``.mhd`` -> ``.mha``, ``.nhdr`` -> ``.nrrd`` (one file instead of a
    header and a data file), a DICOM file or series folder -> ``.nii.gz`` (with the series' geometry, when written
    ``like`` it).

    Args:
        path: an input path (same forms as :func:`read_image`); ``file.h5:/key`` gives ``.h5``.

    Example:
        >>> output_extension("ct/series_001/"), output_extension("ct.mhd"), output_extension("em.tif")
        ('.nii.gz', '.mha', '.tif')
    """
    file, key, ext = _split_path(path)
    if key is None and is_dicom_series(file) or ext == ".dcm":
        return ".nii.gz"
    return _DETACHED_HEADERS.get(ext, ext)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image or stack from TIFF, PNG/JPEG/BMP, NIfTI, HDF5, NPY, MetaImage, NRRD, DICOM or MRC, picked by the
    file extension; a folder is read as one DICOM series.

    Multipage TIFFs give (Z, Y, X); NIfTI (stored (X, Y, Z)) is transposed to (Z, Y, X); ITK formats (``.mha``,
    ``.mhd``, ``.nrrd``, ``.nhdr``, ``.dcm``, DICOM series folders; :mod:`.itk_io`) come as ITK's (Z, Y, X) view, the
    slices of a series in GDCM's position order; MRC (``.mrc``, ``.mrcs``, ``.map``, ``.rec``; :mod:`.mrc_io`) is
    flipped in Y so that the first row is the top one, as in TIFF. Colour images are reduced to grey (channel 0 when
    the colour channels are equal, e.g. the grey+alpha EPFL PNGs, luminance otherwise). Singleton dimensions are
    squeezed; the stored dtype is kept (IMOD's unsigned-byte MRC files give uint8).

    Args:
        path: the file. HDF5 takes ``file.h5`` (first dataset in depth-first order) or ``file.h5:/group/dataset``;
            a folder must hold exactly one DICOM series.

    Returns:
        ``np.ndarray`` of shape (Y, X) or (Z, Y, X).

    Raises:
        ImageReadError: unknown or unavailable extension (the message lists the supported ones), a missing file,
            a file that cannot be decoded, a folder without DICOM files or with several series, NaN or inf values, or
            more than 3 non-singleton dimensions.

    Example:
        >>> volume = read_image("train-volume.tif")  # (30, 512, 512) uint8
        >>> ct = read_image("ct/series_001")  # a folder of .dcm slices, (Z, Y, X) int16
    """
    backend, file, key = _backend(path, "read_image")
    if not (os.path.isfile(file) or backend is _DICOM_SERIES):
        raise ImageReadError(f"read_image: file {file!r} does not exist.")
    try:
        array = np.asarray(backend.read(file, key))
    except ImageReadError:
        raise
    except Exception as err:
        raise ImageReadError(f"read_image: cannot decode {os.fspath(path)!r}: {type(err).__name__}: {err}") from err
    array = np.squeeze(array)
    if array.ndim not in (2, 3):
        raise ImageReadError(
            f"read_image: {os.fspath(path)!r} has shape {array.shape} after squeezing singleton dimensions; "
            "expected a 2D image (Y, X) or a 3D stack (Z, Y, X)."
        )
    if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ImageReadError(f"read_image: {os.fspath(path)!r} holds {bad} NaN or inf values.")
    return array


def read_voxel_size(path: str | os.PathLike) -> tuple[float, ...] | None:
    """Voxel size in nanometres, (Z, Y, X) or (Y, X), where the file's metadata states it; else None.

    Sources: TIFF resolution tags with the ImageJ ``unit`` / ``spacing`` (or a cm / inch resolution unit), NIfTI
    ``pixdim`` (millimetres unless the header says otherwise), HDF5 dataset attributes ``voxel_size`` / ``resolution``
    (nm, ZYX) or ``element_size_um``, ITK spacing of MetaImage / NRRD / DICOM (millimetres), the MRC header's voxel
    size (angstrom; None when the cell is unset). Axes of length 1 are left out, as :func:`read_image` squeezes them.
    PNG, JPEG, BMP and NPY carry none.

    Args:
        path: the file (same forms as :func:`read_image`).

    Returns:
        tuple of floats in nm, or None.

    Raises:
        ImageReadError: unknown extension, missing file or unreadable header.
    """
    backend, file, key = _backend(path, "read_voxel_size")
    if not (os.path.isfile(file) or backend is _DICOM_SERIES):
        raise ImageReadError(f"read_voxel_size: file {file!r} does not exist.")
    try:
        size = backend.voxel_size(file, key)
    except ImageReadError:
        raise
    except Exception as err:
        raise ImageReadError(f"read_voxel_size: cannot read the header of {os.fspath(path)!r}: {err}") from err
    if size is not None and not all(math.isfinite(v) and v > 0 for v in size):
        logger.warning("read_voxel_size: ignoring non-positive voxel size %s in %s", size, file)
        return None
    return size


def write_image(path: str | os.PathLike, array: np.ndarray, like: str | os.PathLike | None = None) -> None:
    """Write an array in the format given by the extension, atomically (:func:`~emdiff_components.utils.atomic_write`).

    TIFF is zlib-compressed (stacks as multipage); PNG takes 2D uint8/uint16, JPEG/BMP 2D uint8; NIfTI is stored
    (X, Y, Z) so that :func:`read_image` gives the array back; HDF5 writes ``file.h5:/key`` (default key ``data``),
    keeping other datasets of an existing file; ``.mha`` and ``.nrrd`` are written by ITK (compressed; not the
    two-file ``.mhd`` / ``.nhdr``, nor DICOM: :func:`output_extension` names what to write instead); MRC by mrcfile
    with Y flipped back (uint8 is stored as uint16, mrcfile's choice). Boolean arrays are written as uint8.

    Args:
        path: destination file; its folder is created if needed.
        array: (Y, X) or (Z, Y, X) array.
        like: the image the array belongs to (e.g. the input a mask was predicted from), whose geometry the output
            takes: a NIfTI output copies a NIfTI ``like``'s affine and header (spacing, orientation, units); MHA,
            NRRD and NIfTI outputs take the spacing, origin and direction of an MHA / NRRD / DICOM ``like`` (file or
            series folder; through ITK, which writes NIfTI's RAS affine from DICOM's LPS geometry), MHA / NRRD those
            of a NIfTI one too; the array's shape must then equal ``like``'s up to singleton axes. An MRC output takes
            an MRC ``like``'s voxel size and origin. Other pairs ignore it. Default None (unit spacing, identity).

    Raises:
        ImageReadError: unsupported extension.
        ValueError: the format cannot hold this array (e.g. a stack or float data as PNG, int64 as MHA or MRC), a
            two-file or DICOM output, a folder as ``path``, or a shape other than that of a geometry-giving ``like``.
    """
    backend, file, key = _backend(path, "write_image")
    if backend is _DICOM_SERIES:
        raise ValueError(f"write_image: {file!r} is a DICOM series folder; write a file (e.g. .nii.gz or .mha).")
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    ext = _split_path(file)[2]
    # HDF5: the new dataset joins the others of an existing file, so the temporary file starts as its copy
    with atomic_write(file, keep_existing=ext in _H5_EXTENSIONS) as tmp:
        backend.write(str(tmp), array, key, None if like is None else os.fspath(like))
