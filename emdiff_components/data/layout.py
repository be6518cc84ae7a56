"""Medical Segmentation Decathlon / nnU-Net folder layout -> MONAI datalist of 2D slices, and the layout writer.

A dataset folder holds ``imagesTr/`` and ``labelsTr/`` (optionally ``imagesTs/`` and ``labelsTs/``) with matching
file names; an image may carry nnU-Net's ``_0000`` channel suffix (``case_0000.tif`` <-> ``case.tif``). Files are 2D
images or (Z, Y, X) stacks, which the 2D methods treat as stacks of slices. Everything is validated before training
starts, so a bad file fails in seconds with its name in the message rather than hours into a run.

The module also holds the layout writers the dataset scripts share (``write_layout``, ``write_dataset_json``):
logic lives in the package, not in ``scripts/``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np

from ..utils import atomic_write, natural_sort_key
from .itk_io import is_dicom_series
from .readers import ImageReadError, read_image, supported_extensions, write_image

__all__ = [
    "CHANNEL_SUFFIX",
    "DatasetError",
    "labelled_datalist",
    "list_images",
    "match_cases",
    "segmentation_datalist",
    "single_file_datalist",
    "strip_extension",
    "write_dataset_json",
    "write_layout",
]

logger = logging.getLogger(__name__)

CHANNEL_SUFFIX = "_0000"
"""nnU-Net's channel suffix of image files: ``case_0000.tif`` is the image of case ``case``."""


class DatasetError(ValueError):
    """A dataset folder or file is unusable; the message names the file and the problem."""


def strip_extension(filename: str) -> str | None:
    """File name without its supported extension (``a.nii.gz`` -> ``a``), None for unsupported files.

    Args:
        filename: a file name (no folder); the extension is matched case-insensitively against
            :func:`~emdiff_components.data.supported_extensions`, longest first.
    """
    lower = filename.lower()
    for ext in sorted(supported_extensions(), key=len, reverse=True):
        if lower.endswith(ext):
            return filename[: -len(ext)]
    return None


LABELLED = "labelled"


def _parse_slices(slices: Sequence[int] | str | None) -> tuple[int, ...] | str | None:
    """``"0-23"`` / ``"0,2,5-7"`` / ``[0, 1]`` -> sorted unique indices; None keeps all slices; ``"labelled"`` stays."""
    if slices is None or slices == LABELLED:
        return slices
    if isinstance(slices, str):
        out: list[int] = []
        for part in slices.replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if match is None:
                raise ValueError(
                    f"segmentation_datalist: slices={slices!r} is not a list of indices or ranges like '0-23' or "
                    "'0,2,5-7'."
                )
            start, stop = int(match.group(1)), int(match.group(2) or match.group(1))
            if stop < start:
                raise ValueError(f"segmentation_datalist: slices range {part!r} runs backwards.")
            out.extend(range(start, stop + 1))
        return tuple(sorted(set(out)))
    values = list(slices)
    if not values or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"segmentation_datalist: slices={slices!r} must hold non-negative ints.")
    return tuple(sorted({int(v) for v in values}))


def list_images(folder: str | os.PathLike, owner: str = "list_images") -> dict[str, str]:
    """The image files of a dataset folder: file stem -> file name, in natural name order.

    Only non-hidden files with a supported extension count, and sub-folders holding a DICOM series (one image each,
    named by the folder: :func:`~emdiff_components.data.is_dicom_series`); other files and folders are ignored.

    Args:
        folder: the folder, e.g. ``imagesTr/``.
        owner: the function named in the error, default ``"list_images"``.

    Raises:
        DatasetError: two files with the same stem (``a.tif`` and ``a.png``).
    """
    folder = os.fspath(folder)
    found: dict[str, str] = {}
    for filename in sorted(os.listdir(folder), key=natural_sort_key):
        path = os.path.join(folder, filename)
        if filename.startswith("."):
            continue
        stem = strip_extension(filename) if os.path.isfile(path) else filename if is_dicom_series(path) else None
        if stem is None:
            continue
        if stem in found:
            raise DatasetError(
                f"{owner}: {os.path.join(folder, found[stem])!r} and {filename!r} have the same name {stem!r}; "
                "keep one."
            )
        found[stem] = filename
    return found


def match_cases(
    images: Mapping[str, str], others: Mapping[str, str] | Sequence[str], image_dir: str, owner: str = "match_cases"
) -> dict[str, str]:
    """Case name -> image stem, dropping nnU-Net's ``_0000`` suffix (:data:`CHANNEL_SUFFIX`) where the others lack it.

    ``case_0000`` is the image of case ``case`` unless a label (or mask) is itself called ``case_0000``.

    Args:
        images: image stems (as keys, e.g. from :func:`list_images`), in the order wanted.
        others: stems of the labels / masks of the same split.
        image_dir: the image folder, for the error message.
        owner: the function named in the error.

    Raises:
        DatasetError: two images map to one case (``a.tif`` and ``a_0000.tif``; multi-channel nnU-Net inputs are
            not supported).
    """
    cases: dict[str, str] = {}
    for stem in images:
        case = stem[: -len(CHANNEL_SUFFIX)] if stem.endswith(CHANNEL_SUFFIX) and stem not in others else stem
        if case in cases:
            raise DatasetError(
                f"{owner}: images {images[cases[case]]!r} and {images[stem]!r} in {image_dir!r} both map to case "
                f"{case!r} (multi-channel nnU-Net inputs are not supported); keep one."
            )
        cases[case] = stem
    return cases


def _read(path: str, what: str) -> np.ndarray:
    try:
        return read_image(path)
    except ImageReadError as err:
        raise DatasetError(f"segmentation_datalist: cannot use {what} {path!r}: {err}") from err


def _check_label_values(label: np.ndarray, path: str, num_classes: int) -> None:
    values = np.unique(label)
    if np.issubdtype(values.dtype, np.floating) and not np.all(values == np.round(values)):
        raise DatasetError(
            f"segmentation_datalist: label {path!r} holds non-integer values {values[:10].tolist()}; "
            f"expected class indices 0..{num_classes - 1}."
        )
    allowed = set(range(num_classes))
    present = {int(v) for v in values}
    if present <= allowed or (num_classes == 2 and present <= {0, 255}):
        return
    bad = sorted(present - allowed)
    raise DatasetError(
        f"segmentation_datalist: label {path!r} has values {bad[:20]} outside the expected range "
        f"0..{num_classes - 1} (num_classes={num_classes})"
        + ("; binary masks may also be saved as 0/255." if num_classes == 2 else ".")
    )


def _labelled_slices(
    image_path: str, label_path: str | None, label: np.ndarray | None, skip: bool = False
) -> tuple[int, ...] | None:
    """Indices of the slices of a stack whose label has foreground (None for 2D files: kept as they are).

    A stack without foreground raises, or with ``skip`` gives ``()`` and a warning naming the label file.
    """
    if label is None:
        raise DatasetError(f"segmentation_datalist: slices='labelled' needs a label for image {image_path!r}.")
    if label.ndim == 2:
        return None
    found = tuple(int(z) for z in np.flatnonzero(label.reshape(label.shape[0], -1).any(axis=1)))
    if not found and skip:
        logger.warning(
            "labelled_datalist: label %r has no foreground in any of its %d slices; case %r has no labelled "
            "slice and is left out of the evaluation.", label_path, label.shape[0], os.path.basename(image_path),
        )
    elif not found:
        raise DatasetError(
            f"segmentation_datalist: label {label_path!r} has no foreground in any of its {label.shape[0]} slices, so "
            f"slices='labelled' keeps nothing of {image_path!r}; remove the case or use slices=None."
        )
    return found


def _slice_entries(image: np.ndarray, path: str, keep: tuple[int, ...] | None) -> list[tuple[int, int]]:
    """(slice index, number of slices) pairs of one file; the ``keep`` filter applies to stacks only."""
    if image.ndim == 2:
        return [(0, 1)]
    depth = image.shape[0]
    if keep is None:
        return [(z, depth) for z in range(depth)]
    outside = [z for z in keep if z >= depth]
    if outside:
        raise DatasetError(
            f"segmentation_datalist: slices {outside} requested but {path!r} has only {depth} slices (0..{depth - 1})."
        )
    return [(z, depth) for z in keep]


def segmentation_datalist(
    dataset_dir: str | os.PathLike,
    split: str = "Tr",
    num_classes: int = 2,
    require_labels: bool = True,
    slices: Sequence[int] | str | None = None,
) -> list[dict]:
    """List the 2D slices of an MSD / nnU-Net dataset folder as MONAI datalist entries, validating every file.

    Args:
        dataset_dir: folder holding ``images<split>/`` and ``labels<split>/``.
        split: folder suffix, default ``"Tr"``; ``"Ts"`` for the test set.
        num_classes: number of classes including background, default 2; labels must lie in 0..num_classes-1
            (for 2 classes, masks saved as exactly {0, 255} are accepted too; ``LoadSlice`` maps them to 0/1).
        require_labels: default True: every image needs a label. False (inference): images without a label are
            listed without a ``"label"`` key; labels that do exist are still validated and listed.
        slices: keep only these slice indices of every (Z, Y, X) stack: a list, or a string like ``"0-23"`` or
            ``"0,2,5-7"``; ``"labelled"`` keeps the slices whose label has foreground (CT volumes, where most axial
            slices hold no lesion); default None keeps all. 2D files are kept as they are.

    Returns:
        one dict per 2D slice, in natural file-name order then slice order: ``{"image": abs_path, "label":
        abs_path, "slice": z, "num_slices": Z, "name": case name}`` (2D files: slice 0, num_slices 1; the name drops
        the extension and nnU-Net's ``_0000`` suffix).

    Raises:
        DatasetError: missing or empty ``images<split>`` folder, an image without label (when required), a label
            without image, an unreadable file, NaN/inf in an image, image/label shape mismatch, label values
            outside the classes, no slice left after the ``slices`` filter, or (``slices="labelled"``) a stack whose
            label has no foreground in any slice, or an image without label.
        ValueError: invalid ``num_classes`` or ``slices``.

    Example:
        >>> train = segmentation_datalist("data/isbi_mito", "Tr", num_classes=2, slices="0-23")
        >>> train[0]["slice"], train[0]["num_slices"]
        (0, 30)
    """
    return _datalist(dataset_dir, split, num_classes, require_labels, slices, skip_unlabelled=False)[0]


def labelled_datalist(
    dataset_dir: str | os.PathLike, split: str = "Ts", num_classes: int = 2
) -> tuple[list[dict], list[str]]:
    """The labelled slices of a test set, as papers that score lesion slices only; cases without any are left out.

    As ``segmentation_datalist(dataset_dir, split, num_classes, slices="labelled")``, except that a (Z, Y, X) stack
    whose label has no foreground in any slice (a CT volume without lesion) is not an error: it is left out of the
    entries, named in a warning, and returned in the second list, so an evaluation can report it (e.g. as
    ``SegmentationReport(skipped_cases=...)``) while the other cases are still scored.

    Args:
        dataset_dir: folder holding ``images<split>/`` and ``labels<split>/``.
        split: folder suffix, default ``"Ts"``.
        num_classes: number of classes including background, default 2.

    Returns:
        ``(entries, unlabelled)``: the datalist entries of :func:`segmentation_datalist` and the names of the cases
        left out for having no labelled slice, in natural file-name order.

    Raises:
        DatasetError: as :func:`segmentation_datalist`; also when no case has a labelled slice.
        ValueError: invalid ``num_classes``.
    """
    return _datalist(dataset_dir, split, num_classes, True, LABELLED, skip_unlabelled=True)


def _datalist(
    dataset_dir: str | os.PathLike,
    split: str,
    num_classes: int,
    require_labels: bool,
    slices: Sequence[int] | str | None,
    skip_unlabelled: bool,
) -> tuple[list[dict], list[str]]:
    """Entries of :func:`segmentation_datalist` and the cases left out for an all-background label
    (``skip_unlabelled``, ``slices="labelled"`` only; otherwise such a case raises)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"segmentation_datalist: num_classes must be an int >= 2, got {num_classes!r}.")
    keep = _parse_slices(slices)
    root = os.path.abspath(os.fspath(dataset_dir))
    image_dir, label_dir = os.path.join(root, f"images{split}"), os.path.join(root, f"labels{split}")
    if not os.path.isdir(image_dir):
        raise DatasetError(
            f"segmentation_datalist: missing folder {image_dir!r} (expected images{split}/ in {root!r})."
        )
    images = list_images(image_dir, "segmentation_datalist")
    if not images:
        raise DatasetError(
            f"segmentation_datalist: empty dataset folder {image_dir!r}: no files with a supported extension "
            f"({', '.join(supported_extensions())})."
        )
    labels = list_images(label_dir, "segmentation_datalist") if os.path.isdir(label_dir) else {}
    if require_labels and not os.path.isdir(label_dir):
        raise DatasetError(f"segmentation_datalist: missing folder {label_dir!r} (require_labels=True).")

    cases = match_cases(images, labels, image_dir, "segmentation_datalist")
    orphans = sorted(set(labels) - set(cases), key=natural_sort_key)
    if orphans:
        raise DatasetError(
            f"segmentation_datalist: label {os.path.join(label_dir, labels[orphans[0]])!r} has no matching image in "
            f"{image_dir!r}" + (f" ({len(orphans)} labels without image)." if len(orphans) > 1 else ".")
        )

    entries: list[dict] = []
    unlabelled: list[str] = []
    for case, stem in cases.items():
        image_path = os.path.join(image_dir, images[stem])
        if case not in labels and require_labels:
            raise DatasetError(
                f"segmentation_datalist: image {image_path!r} has no label in {label_dir!r} (expected "
                f"{case}.<ext>)."
            )
        image = _read(image_path, "image")
        label_path = os.path.join(label_dir, labels[case]) if case in labels else None
        label = None
        if label_path is not None:
            label = _read(label_path, "label")
            if label.shape != image.shape:
                raise DatasetError(
                    f"segmentation_datalist: image {image_path!r} has shape {image.shape} but label {label_path!r} "
                    f"has shape {label.shape}."
                )
            _check_label_values(label, label_path, int(num_classes))
        file_keep = keep
        if keep == LABELLED:
            file_keep = _labelled_slices(image_path, label_path, label, skip_unlabelled)
            if file_keep == ():
                unlabelled.append(case)
                continue
        for z, depth in _slice_entries(image, image_path, file_keep):
            entry = {"image": image_path, "slice": z, "num_slices": depth, "name": case}
            if label_path is not None:
                entry["label"] = label_path
            entries.append(entry)
    if not entries:
        raise DatasetError(f"segmentation_datalist: no slices left in {image_dir!r} after slices={slices!r}.")
    return entries, unlabelled


def single_file_datalist(path: str | os.PathLike, num_classes: int = 2) -> list[dict]:
    """Datalist entries (no labels) for every 2D slice of one input file, e.g. an inference ``--input``.

    Args:
        path: a 2D image or (Z, Y, X) stack in any format of :func:`~emdiff_components.data.read_image`, or a
            DICOM series folder (the case is named after the folder).
        num_classes: accepted (and checked to be >= 2) so that configs can pass the same arguments as to
            :func:`segmentation_datalist`; without labels it has no effect.

    Returns:
        ``[{"image": abs_path, "slice": z, "num_slices": Z, "name": stem}, ...]``.

    Raises:
        DatasetError: the file is missing, unreadable or holds NaN/inf.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"single_file_datalist: num_classes must be an int >= 2, got {num_classes!r}.")
    image_path = os.path.abspath(os.fspath(path))
    # HDF5 inputs may name a dataset (``file.h5:/group/raw``): the case name comes from the file part
    file_part = re.split(r"(?<=\.h5):|(?<=\.hdf5):", image_path, maxsplit=1, flags=re.IGNORECASE)[0]
    # a folder is a DICOM series named after itself (read_image below says so when it holds none)
    name = os.path.basename(file_part) if os.path.isdir(file_part) else strip_extension(os.path.basename(file_part))
    if name is None:
        raise DatasetError(
            f"single_file_datalist: unsupported file {image_path!r}; supported extensions: "
            f"{', '.join(supported_extensions())}."
        )
    try:
        image = read_image(image_path)
    except ImageReadError as err:
        raise DatasetError(f"single_file_datalist: cannot use image {image_path!r}: {err}") from err
    return [
        {"image": image_path, "slice": z, "num_slices": depth, "name": name}
        for z, depth in _slice_entries(image, image_path, None)
    ]


def write_layout(
    out_dir: str | os.PathLike, split: str, name: str, image: np.ndarray, label: np.ndarray | None = None
) -> tuple[str, str | None]:
    """Write one case into the layout as TIFF: ``images<split>/<name>.tif`` and ``labels<split>/<name>.tif``.

    Args:
        out_dir: dataset folder (created if needed).
        split: ``"Tr"`` or ``"Ts"`` (any suffix is allowed).
        name: case name, without extension.
        image: (Y, X) or (Z, Y, X) array.
        label: same shape as ``image`` (class indices), or None for an unlabelled case.

    Returns:
        (image path, label path or None).

    Raises:
        ValueError: empty name or image / label shape mismatch.
    """
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"write_layout: name must be a plain, non-hidden file name, got {name!r}.")
    image = np.asarray(image)
    if label is not None and np.shape(label) != image.shape:
        raise ValueError(f"write_layout: image shape {image.shape} and label shape {np.shape(label)} differ ({name}).")
    image_path = os.path.join(os.fspath(out_dir), f"images{split}", f"{name}.tif")
    write_image(image_path, image)
    label_path = None
    if label is not None:
        label_path = os.path.join(os.fspath(out_dir), f"labels{split}", f"{name}.tif")
        write_image(label_path, np.asarray(label))
    return image_path, label_path


def write_dataset_json(
    out_dir: str | os.PathLike,
    name: str,
    labels: dict[str, int],
    description: str = "",
    reference: str = "",
    licence: str = "",
    modality: str = "EM",
) -> str:
    """Write an MSD-style ``dataset.json`` listing the cases present in ``imagesTr``/``imagesTs`` (written last,
    so its presence marks a complete conversion).

    Args:
        out_dir: dataset folder.
        name: dataset name.
        labels: class name -> index, e.g. ``{"background": 0, "mitochondria": 1}``.
        description: free text (origin, processing).
        reference: citation.
        licence: licence / terms of use.
        modality: imaging modality of channel 0, default ``"EM"`` (``"CT"`` for CT sets).

    Returns:
        path of the written file.
    """
    root = os.fspath(out_dir)
    doc = {
        "name": name,
        "description": description,
        "reference": reference,
        "licence": licence,
        "tensorImageSize": "3D",
        "modality": {"0": modality},
        "labels": {str(v): k for k, v in sorted(labels.items(), key=lambda kv: kv[1])},
    }
    for split, key in (("Tr", "training"), ("Ts", "test")):
        folder = os.path.join(root, f"images{split}")
        files = sorted(os.listdir(folder), key=natural_sort_key) if os.path.isdir(folder) else []
        cases = [f for f in files if not f.startswith(".") and strip_extension(f) is not None]
        doc[f"num{key.capitalize()}"] = len(cases)
        doc[key] = [
            {"image": f"./images{split}/{f}", "label": f"./labels{split}/{f}"}
            if os.path.exists(os.path.join(root, f"labels{split}", f))
            else f"./images{split}/{f}"
            for f in cases
        ]
    path = os.path.join(root, "dataset.json")
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2))
    return path
