"""ITK backends of the reader registry: MetaImage (``.mha`` / ``.mhd``), NRRD (``.nrrd`` / ``.nhdr``), DICOM files and
DICOM series folders, read in (Z, Y, X) order with their geometry (spacing, origin, direction), which outputs keep.

ITK (https://itk.org, McCormick et al. "ITK: enabling reproducible research and open science", Front. Neuroinform. 2014)
reads these through ``itk.imread`` (a folder through ``GDCMSeriesFileNames`` + ``ImageSeriesReader``, as MONAI's
``ITKReader`` does). ITK's own array view is already (Z, Y, X) (``itk.array_from_image``), so no axis is reordered here;
MONAI's ``ITKReader`` is not used because it returns (X, Y, Z) arrays and a RAS affine that would be undone again.
Spacing is in millimetres (the unit of DICOM, MetaImage and NRRD medical images) and the registry's voxel size in nm.

The functions here are registered by :mod:`.readers`; they raise plain ``ValueError`` / ``OSError`` naming the file,
which :func:`~emdiff_components.data.read_image` turns into ``ImageReadError``. Only :func:`is_dicom_series` is public.
"""

from __future__ import annotations

import functools
import locale
import os
from dataclasses import dataclass

import numpy as np
from monai.utils import optional_import

__all__ = ["is_dicom_series"]

itk, _has_itk = optional_import("itk")

_ITK_EXTENSIONS = (".mha", ".mhd", ".nrrd", ".nhdr", ".dcm")
# a detached header names its data file; the atomic temporary name would end up in it, so these are read only
_DETACHED_HEADERS = {".mhd": ".mha", ".nhdr": ".nrrd"}
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_DICOM_MAGIC_OFFSET, _DICOM_MAGIC = 128, b"DICM"
_PROBED_FILES = 16  # files without a DICOM suffix whose preamble is checked before a folder is called "not DICOM"
_NM_PER_MM = 1e6
# pixel types the ITK wheels wrap for writing (itk 5.4: no int8, int64, uint64)
_WRITABLE_DTYPES = (np.uint8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64)


def _keeps_locale(function):
    """Restore the process locale after ``function``: ITK's GDCM sets ``LC_ALL`` to "C" while reading DICOM, which turns
    Python's default text encoding to ASCII for the rest of the process (a UTF-8 README or config then fails to open)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        saved = locale.setlocale(locale.LC_ALL)
        try:
            return function(*args, **kwargs)
        finally:
            if locale.setlocale(locale.LC_ALL) != saved:
                locale.setlocale(locale.LC_ALL, saved)

    return wrapper


@_keeps_locale
def is_dicom_series(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding DICOM files (named ``*.dcm`` / ``*.dicom`` / ``*.ima``, or starting with
    the DICOM preamble ``DICM`` at byte 128), which the readers take as one DICOM series.

    Args:
        path: any path; files and missing paths give False.
    """
    folder = os.fspath(path)
    if not os.path.isdir(folder):
        return False
    names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    files = [n for n in names if os.path.isfile(os.path.join(folder, n))]
    if any(n.lower().endswith(_DICOM_SUFFIXES) for n in files):
        return True
    for name in files[:_PROBED_FILES]:
        with open(os.path.join(folder, name), "rb") as handle:
            handle.seek(_DICOM_MAGIC_OFFSET)
            if handle.read(len(_DICOM_MAGIC)) == _DICOM_MAGIC:
                return True
    return False


@_keeps_locale
def _dicom_series_files(folder: str) -> list[str]:
    """The files of the one DICOM series in ``folder``, in slice order (GDCM sorts them by position).

    Series are told apart as ``itk.imread`` does (series UID plus GDCM's series details and the series date).

    Raises:
        FileNotFoundError: no series ITK can read in the folder.
        ValueError: more than one series (each needs its own folder: a folder is one image).
    """
    names = itk.GDCMSeriesFileNames.New()
    names.SetUseSeriesDetails(True)
    names.AddSeriesRestriction("0008|0021")  # series date, as itk.imread
    names.SetDirectory(folder)
    uids = list(names.GetSeriesUIDs())
    if not uids:
        raise FileNotFoundError(f"folder {folder!r} holds no DICOM series that ITK (GDCM) can read.")
    if len(uids) > 1:
        shown = ", ".join(uids[:4]) + (", ..." if len(uids) > 4 else "")
        raise ValueError(
            f"folder {folder!r} holds {len(uids)} DICOM series ({shown}); a folder is read as one image: move each "
            "series into its own folder."
        )
    return [str(f) for f in names.GetFileNames(uids[0])]


@dataclass(frozen=True)
class _ItkGeometry:
    """Where an ITK image lies in space: ``shape`` in numpy (Z, Y, X) order; ``spacing`` and ``origin`` in ITK's (x, y,
    z) order, millimetres; ``direction`` the (D, D) matrix whose columns are the x, y, z axis directions (LPS)."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray

    def apply(self, image) -> None:
        """Give an ``itk.Image`` of the same dimension this geometry."""
        image.SetSpacing([float(v) for v in self.spacing])
        image.SetOrigin([float(v) for v in self.origin])
        image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(self.direction, dtype=np.float64)))


@_keeps_locale
def _read_geometry(path: str) -> _ItkGeometry:
    """The geometry of an ITK-readable file (or DICOM series folder) from its header(s), without reading the voxels.

    Any format ITK reads works, NIfTI included (ITK converts its RAS affine to LPS spacing / origin / direction).
    """
    if os.path.isdir(path):
        reader = itk.ImageSeriesReader[itk.Image[itk.F, 3]].New(
            FileNames=_dicom_series_files(path), ImageIO=itk.GDCMImageIO.New()
        )
    else:
        io = itk.ImageIOFactory.CreateImageIO(path, itk.CommonEnums.IOFileMode_ReadMode)
        if io is None:
            raise ValueError(f"ITK has no reader for {path!r}.")
        io.SetFileName(path)
        io.ReadImageInformation()
        reader = itk.ImageFileReader[itk.Image[itk.F, io.GetNumberOfDimensions()]].New(FileName=path, ImageIO=io)
    reader.UpdateOutputInformation()
    image = reader.GetOutput()
    return _ItkGeometry(
        shape=tuple(int(n) for n in reversed(image.GetLargestPossibleRegion().GetSize())),
        spacing=tuple(float(v) for v in image.GetSpacing()),
        origin=tuple(float(v) for v in image.GetOrigin()),
        direction=np.array(itk.array_from_matrix(image.GetDirection()), dtype=np.float64),
    )


@_keeps_locale
def _itk_read(path: str, key: str | None) -> np.ndarray:
    """Voxels of an ITK-readable file or DICOM series folder, (Z, Y, X) or (Y, X), in the stored pixel type."""
    image = itk.imread(_dicom_series_files(path) if os.path.isdir(path) else path)
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise ValueError(f"{path!r} holds {components} values per voxel (colour or vector image); one is read.")
    return itk.array_from_image(image)


@_keeps_locale
def _itk_voxel_size(path: str, key: str | None) -> tuple[float, ...] | None:
    """ITK spacing (mm) as the registry's voxel size: nm, (Z, Y, X), without the singleton axes read_image squeezes."""
    geometry = _read_geometry(path)
    sizes = [s * _NM_PER_MM for s, n in zip(reversed(geometry.spacing), geometry.shape) if n != 1]
    return tuple(sizes) or None


@_keeps_locale
def _itk_write(path: str, array: np.ndarray, key: str | None, like: str | None = None) -> None:
    """Write ``array`` through ITK (format by extension; compressed); with ``like``, the image takes its geometry.

    Args:
        path: ``.mha``, ``.nrrd`` or ``.nii`` / ``.nii.gz`` (ITK stores LPS directions as NIfTI's RAS qform / sform).
        array: (Y, X) or (Z, Y, X) in a pixel type ITK writes (uint8, uint16, int16, uint32, int32, float32, float64).
        like: a file or DICOM series folder ITK reads; its spacing, origin and direction are copied. Its shape must
            equal the array's up to singleton axes (a (1, Y, X) image and a (Y, X) mask). Default None (unit spacing).

    Raises:
        ValueError: a detached header (``.mhd`` / ``.nhdr``) or DICOM output, an unwritable pixel type, or a shape
            other than ``like``'s.
    """
    ext = ".nii.gz" if path.lower().endswith(".nii.gz") else os.path.splitext(path)[1].lower()
    if ext in _DETACHED_HEADERS:
        raise ValueError(
            f"write_image: {ext} keeps its voxels in a second file; write {_DETACHED_HEADERS[ext]} (the same format in "
            f"one file) instead of {path!r}."
        )
    if ext == ".dcm":
        raise ValueError(f"write_image: DICOM is read only; write {path!r} as .nii.gz or .mha (both keep geometry).")
    if array.dtype.type not in _WRITABLE_DTYPES:
        raise ValueError(
            f"write_image: ITK writes {[np.dtype(t).name for t in _WRITABLE_DTYPES]}, not {array.dtype} ({path!r}); "
            "cast the array first (labels to uint8 / int32)."
        )
    geometry = _read_geometry(like) if like is not None else None
    if geometry is not None and array.shape != geometry.shape:
        if tuple(n for n in array.shape if n != 1) != tuple(n for n in geometry.shape if n != 1):
            raise ValueError(
                f"write_image: array of shape {array.shape} cannot take the geometry of {like!r}, whose shape is "
                f"{geometry.shape} (Z, Y, X)."
            )
        array = array.reshape(geometry.shape)
    image = itk.image_from_array(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("=")))
    if geometry is not None:
        geometry.apply(image)
    itk.imwrite(image, path, compression=True)
