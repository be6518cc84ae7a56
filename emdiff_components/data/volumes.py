"""3D volume layout for NeuroDiff: EM volumes with neuron instance labels and optional mitochondria masks.

Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation", ISBI 2026,
https://arxiv.org/abs/2601.15779 (trains on whole (Z, Y, X) volumes, not on 2D slices).

Layout of a dataset folder ``DIR``::

    DIR/imagesTr/<name>.tif | .h5     EM volume, (Z, Y, X), any grey dtype
    DIR/labelsTr/<name>.tif | .h5     neuron instance labels, same shape; 0 = unlabelled / boundary
    DIR/mitoTr/<name>.tif | .h5       optional binary mitochondria mask (0/1 or 0/255), same shape;
                                      a missing folder or file means "no mitochondria annotated"
    DIR/imagesTs/ ... labelsTs/ ... mitoTs/    the test split, same rules
    DIR/dataset.json                  optional; its ``"voxel_size": [z, y, x]`` (nm) is a fallback, see below

Files are matched by name without extension (an image may carry nnU-Net's ``_0000`` suffix). HDF5 files hold one
volume each; which dataset inside is used follows :func:`~emdiff_components.data.read_image`: the first dataset,
or the one named through ``h5_keys`` (entries then carry ``file.h5:/key`` paths, which every reader accepts).

Voxel size (nm, (z, y, x)), in this order: the ``voxel_size`` argument; the image file's own metadata
(:func:`~emdiff_components.data.read_voxel_size`: ImageJ TIFF tags, HDF5 ``resolution`` / ``voxel_size`` attributes);
``dataset.json``'s ``"voxel_size"``; otherwise an error asking for it. The writers here store it in ``dataset.json``
because :func:`~emdiff_components.data.write_image` writes no resolution tags.

Everything is validated by :func:`volume_datalist` before training starts, so that a bad file fails in seconds with
its name in the message.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
from monai.utils import optional_import

from ..utils import atomic_write, check_voxel_size, natural_sort_key
from .layout import DatasetError, list_images, match_cases, strip_extension, write_dataset_json, write_layout
from .readers import ImageReadError, read_image, read_voxel_size, write_image

ndimage, _has_ndimage = optional_import("scipy.ndimage")

__all__ = [
    "volume_datalist",
    "condition_datalist",
    "image_volume_datalist",
    "write_volume_case",
    "write_volume_dataset_json",
    "label_slices_2d",
]

logger = logging.getLogger(__name__)

_KINDS = ("image", "label", "mito")
_H5 = (".h5", ".hdf5")


def _check_min_shape(min_shape: Sequence[int] | None, owner: str) -> tuple[int, int, int] | None:
    if min_shape is None:
        return None
    values = list(min_shape) if isinstance(min_shape, (list, tuple)) else None
    if (
        values is None
        or len(values) != 3
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in values)
    ):
        raise ValueError(f"{owner}: min_shape must be 3 positive ints (Z, Y, X), got {min_shape!r}.")
    return tuple(int(v) for v in values)


def _dataset_json_voxel_size(root: str) -> tuple[float, float, float] | None:
    path = os.path.join(root, "dataset.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as handle:
            value = json.load(handle).get("voxel_size")
    except (OSError, ValueError, AttributeError) as err:
        raise DatasetError(f"volume_datalist: cannot read {path!r}: {err}") from err
    if value is None:
        return None
    try:
        return check_voxel_size(value, "volume_datalist")
    except ValueError as err:
        raise DatasetError(f"volume_datalist: bad \"voxel_size\" in {path!r}: {err}") from err


def _with_key(path: str, kind: str, h5_keys: Mapping[str, str] | None) -> str:
    if h5_keys and kind in h5_keys and path.lower().endswith(_H5):
        return f"{path}:{h5_keys[kind]}"
    return path


def _read_volume(path: str, kind: str, owner: str = "volume_datalist") -> np.ndarray:
    try:
        array = read_image(path)
    except ImageReadError as err:
        raise DatasetError(f"{owner}: cannot use {kind} {path!r}: {err}") from err
    if array.ndim != 3:
        raise DatasetError(
            f"{owner}: {kind} {path!r} has shape {array.shape}, a 2D image; a (Z, Y, X) volume is needed "
            "(stack the slices into one multipage TIFF or HDF5 dataset)."
        )
    return array


def _check_label(label: np.ndarray, path: str) -> None:
    if np.issubdtype(label.dtype, np.floating):
        if not np.all(label == np.round(label)):
            raise DatasetError(f"volume_datalist: label {path!r} holds non-integer values; expected instance ids.")
    elif not np.issubdtype(label.dtype, np.integer) and label.dtype != bool:
        raise DatasetError(f"volume_datalist: label {path!r} has dtype {label.dtype}; expected integer instance ids.")
    if label.min() < 0:
        raise DatasetError(f"volume_datalist: label {path!r} holds negative ids (min {label.min()}).")
    if not label.any():
        raise DatasetError(f"volume_datalist: label {path!r} is all zero: no neuron is labelled.")


def _check_mito(mito: np.ndarray, path: str) -> None:
    present = {float(v) for v in np.unique(mito)}
    if not (present <= {0.0, 1.0} or present <= {0.0, 255.0}):
        shown = sorted(present)[:10]
        raise DatasetError(
            f"volume_datalist: mitochondria mask {path!r} has values {shown}; expected a binary mask (0/1 or 0/255)."
        )


def volume_datalist(
    dataset_dir: str | os.PathLike,
    split: str = "Tr",
    require_labels: bool = True,
    voxel_size: Sequence[float] | None = None,
    min_shape: Sequence[int] | None = None,
    h5_keys: Mapping[str, str] | None = None,
) -> list[dict]:
    """List the (Z, Y, X) volumes of a NeuroDiff dataset folder as MONAI datalist entries, validating every file.

    Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation", ISBI 2026,
    https://arxiv.org/abs/2601.15779. The layout is described in this module's docstring.

    Args:
        dataset_dir: folder holding ``images<split>/``, ``labels<split>/`` and optionally ``mito<split>/``.
        split: folder suffix, default ``"Tr"``; ``"Ts"`` for the test set.
        require_labels: default True: every image needs an instance label. False (synthesis / inference): images
            without a label are listed without a ``"label"`` key; labels that exist are still validated.
        voxel_size: (z, y, x) or (z, xy) in nm for every volume, e.g. ``(29, 6, 6)`` for AC3/AC4; default None takes
            each image file's metadata, then ``dataset.json``'s ``"voxel_size"``.
        min_shape: smallest usable (Z, Y, X), normally the training patch; default None checks nothing.
        h5_keys: internal HDF5 dataset per kind, e.g. ``{"image": "/raw", "label": "/neuron_ids"}``; kinds not given
            (and all kinds by default) use the file's first dataset.

    Returns:
        one dict per volume in natural name order: ``{"image": path, "label": path, "mito": path, "name": case,
        "voxel_size": (z, y, x)}``; ``"label"`` is missing for unlabelled images when ``require_labels=False``, and
        ``"mito"`` where no mitochondria mask exists. Paths are absolute (``file.h5:/key`` for HDF5 with a key).

    Raises:
        DatasetError: missing or empty ``images<split>``; an image without label (when required); a label or mask
            without image; an unreadable file; a 2D file; image / label / mask shapes that differ (both files and
            shapes named); labels that are not non-negative integers or are all zero; a mask that is not binary; a
            volume smaller than ``min_shape``; no voxel size anywhere; a bad ``dataset.json``.
        ValueError: malformed ``voxel_size``, ``min_shape`` or ``h5_keys``.

    Example:
        >>> train = volume_datalist("data/ac3_ac4", "Tr", min_shape=(8, 128, 128))
        >>> train[0]["voxel_size"]
        (29.0, 6.0, 6.0)
    """
    size_arg = check_voxel_size(voxel_size, "volume_datalist") if voxel_size is not None else None
    patch = _check_min_shape(min_shape, "volume_datalist")
    if h5_keys is not None and (not isinstance(h5_keys, Mapping) or set(h5_keys) - set(_KINDS)):
        raise ValueError(f"volume_datalist: h5_keys must map some of {list(_KINDS)} to dataset names, got {h5_keys!r}.")
    root = os.path.abspath(os.fspath(dataset_dir))
    prefixes = ("images", "labels", "mito")
    folders = {kind: os.path.join(root, f"{prefix}{split}") for kind, prefix in zip(_KINDS, prefixes)}
    if not os.path.isdir(folders["image"]):
        raise DatasetError(
            f"volume_datalist: missing folder {folders['image']!r} (expected images{split}/ in {root!r})."
        )
    if require_labels and not os.path.isdir(folders["label"]):
        raise DatasetError(f"volume_datalist: missing folder {folders['label']!r} (require_labels=True).")
    found = {
        kind: list_images(folder, "volume_datalist") if os.path.isdir(folder) else {}
        for kind, folder in folders.items()
    }
    if not found["image"]:
        raise DatasetError(f"volume_datalist: empty dataset folder {folders['image']!r}: no readable volume files.")
    cases = match_cases(found["image"], {**found["label"], **found["mito"]}, folders["image"], "volume_datalist")
    for kind in ("label", "mito"):
        orphans = sorted(set(found[kind]) - set(cases), key=natural_sort_key)
        if orphans:
            raise DatasetError(
                f"volume_datalist: {kind} {os.path.join(folders[kind], found[kind][orphans[0]])!r} has no matching "
                f"image in {folders['image']!r}" + (f" ({len(orphans)} such files)." if len(orphans) > 1 else ".")
            )
    json_size = _dataset_json_voxel_size(root) if size_arg is None else None

    entries: list[dict] = []
    for case, stem in cases.items():
        paths = {"image": os.path.join(folders["image"], found["image"][stem])}
        for kind in ("label", "mito"):
            if case in found[kind]:
                paths[kind] = os.path.join(folders[kind], found[kind][case])
        if require_labels and "label" not in paths:
            raise DatasetError(
                f"volume_datalist: image {paths['image']!r} has no label in {folders['label']!r} (expected "
                f"{case}.<ext>)."
            )
        paths = {kind: _with_key(path, kind, h5_keys) for kind, path in paths.items()}
        image = _read_volume(paths["image"], "image")
        shape = image.shape
        del image  # volumes can be large: keep at most one array alive
        for kind in ("label", "mito"):
            if kind not in paths:
                continue
            array = _read_volume(paths[kind], kind)
            if array.shape != shape:
                raise DatasetError(
                    f"volume_datalist: image {paths['image']!r} has shape {shape} but {kind} {paths[kind]!r} has "
                    f"shape {array.shape}."
                )
            (_check_label if kind == "label" else _check_mito)(array, paths[kind])
            del array
        if patch is not None and any(s < p for s, p in zip(shape, patch)):
            raise DatasetError(
                f"volume_datalist: image {paths['image']!r} has shape {shape}, smaller than the patch {patch} "
                "(min_shape) along at least one axis; use a smaller patch or pad the volume."
            )
        size = size_arg
        if size is None:
            try:
                meta = read_voxel_size(paths["image"])
            except ImageReadError as err:
                raise DatasetError(f"volume_datalist: cannot read the voxel size of {paths['image']!r}: {err}") from err
            size = tuple(float(v) for v in meta) if meta is not None and len(meta) == 3 else json_size
        if size is None:
            raise DatasetError(
                f"volume_datalist: no voxel size for {paths['image']!r}: neither its metadata nor "
                f"{os.path.join(root, 'dataset.json')!r} states one; pass voxel_size=(z, y, x) in nm, "
                "e.g. (29, 6, 6) for AC3/AC4."
            )
        entries.append({**paths, "name": case, "voxel_size": size})
    logger.debug("volume_datalist: %d volumes in %s (split %s)", len(entries), root, split)
    return entries


def condition_datalist(path: str | os.PathLike, min_shape: Sequence[int] | None = None) -> list[dict]:
    """Condition volumes to synthesize from: one file, or every volume in a folder, validated before sampling starts.

    A condition is a (Z, Y, X) integer volume of 0 (background), 1 (membrane), 2 (mitochondria), as written by
    :func:`emdiff_components.engines.remodel_volumes` (``conditionsTr/``) or drawn by hand.

    Args:
        path: a volume file or a folder of them.
        min_shape: the smallest (Z, Y, X) accepted (e.g. the network's stride); None: no limit.

    Returns:
        ``[{"condition": path, "name": stem}, ...]`` in natural name order.

    Raises:
        DatasetError: missing or empty folder, unreadable file, not 3D, values other than 0, 1, 2, or smaller than
            ``min_shape``.
        ValueError: malformed ``min_shape``.
    """
    minimum = _check_min_shape(min_shape, "condition_datalist")
    root = os.path.abspath(os.fspath(path))
    if os.path.isdir(root):
        files = {stem: os.path.join(root, f) for stem, f in list_images(root, "condition_datalist").items()}
        if not files:
            raise DatasetError(f"condition_datalist: no condition volumes in {root!r}.")
    elif os.path.isfile(root):
        files = {strip_extension(os.path.basename(root)) or os.path.basename(root): root}
    else:
        raise DatasetError(f"condition_datalist: {root!r} does not exist.")
    entries = []
    for name, file in files.items():
        volume = _read_volume(file, "condition", "condition_datalist")
        bad = sorted({int(v) for v in np.unique(volume)} - {0, 1, 2})
        if bad:
            raise DatasetError(
                f"condition_datalist: condition {file!r} has values {bad[:10]}; a condition holds only 0 (background), "
                "1 (membrane) and 2 (mitochondria)."
            )
        if minimum is not None and any(s < m for s, m in zip(volume.shape, minimum)):
            raise DatasetError(
                f"condition_datalist: condition {file!r} has shape {volume.shape}, smaller than {minimum} (Z, Y, X)."
            )
        entries.append({"condition": file, "name": name})
    return entries


def image_volume_datalist(path: str | os.PathLike) -> list[dict]:
    """EM volumes to segment: one file (TIFF, HDF5 ``file.h5:/key``, zarr, NPY) or every volume file in a folder.

    Only the shape is read (lazily, :func:`~emdiff_components.data.open_volume`), so a large volume is checked in
    seconds before prediction starts.

    Returns:
        ``[{"image": path, "name": stem}, ...]`` in natural name order.

    Raises:
        DatasetError: a missing path, an empty folder, or a file that cannot be opened or is not 3D (named).
    """
    from .arrays import open_volume  # the lazy readers (zarr / HDF5 / TIFF memmap) live there

    root = os.path.abspath(os.fspath(path))
    file = root.split(":", 1)[0] if ".h5:" in root or ".hdf5:" in root or ".zarr:" in root else root
    if os.path.isdir(file) and not file.endswith(".zarr"):
        files = {stem: os.path.join(file, f) for stem, f in list_images(file, "image_volume_datalist").items()}
        files.update({f[: -len(".zarr")]: os.path.join(file, f) for f in sorted(os.listdir(file)) if f.endswith(".zarr")})
        if not files:
            raise DatasetError(f"image_volume_datalist: no volumes in {file!r}.")
    elif os.path.exists(file):
        base = os.path.basename(file)
        files = {strip_extension(base) or base.rsplit(".", 1)[0]: root}
    else:
        raise DatasetError(f"image_volume_datalist: {root!r} does not exist.")
    entries = []
    for name in sorted(files, key=natural_sort_key):
        try:
            with open_volume(files[name], ndim=3):
                pass
        except (ImageReadError, ValueError) as err:
            raise DatasetError(f"image_volume_datalist: cannot use {files[name]!r} as a (Z, Y, X) volume: {err}") from err
        entries.append({"image": files[name], "name": name})
    return entries


def write_volume_case(
    out_dir: str | os.PathLike,
    split: str,
    name: str,
    image: np.ndarray,
    label: np.ndarray | None = None,
    mito: np.ndarray | None = None,
) -> dict[str, str]:
    """Write one volume into the layout as TIFF: ``images<split>/``, ``labels<split>/`` and ``mito<split>/<name>.tif``.

    Args:
        out_dir: dataset folder (created if needed).
        split: ``"Tr"`` or ``"Ts"`` (any suffix is allowed).
        name: case name, without extension.
        image: (Z, Y, X) EM volume.
        label: (Z, Y, X) instance labels, or None (unlabelled case).
        mito: (Z, Y, X) binary mask (any non-zero is mitochondrion; written as uint8 0/1), or None.

    Returns:
        dict of the written paths, keys ``"image"`` and, where written, ``"label"``, ``"mito"``.

    Raises:
        ValueError: a 2D image, an empty or path-like name, or arrays of different shapes.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"write_volume_case: image must be a (Z, Y, X) volume, got shape {image.shape} ({name}).")
    if mito is not None and np.shape(mito) != image.shape:
        raise ValueError(
            f"write_volume_case: image shape {image.shape} and mito shape {np.shape(mito)} differ ({name})."
        )
    image_path, label_path = write_layout(out_dir, split, name, image, label)
    paths = {"image": image_path}
    if label_path is not None:
        paths["label"] = label_path
    if mito is not None:
        paths["mito"] = os.path.join(os.fspath(out_dir), f"mito{split}", f"{name}.tif")
        write_image(paths["mito"], (np.asarray(mito) != 0).astype(np.uint8))
    return paths


def write_volume_dataset_json(
    out_dir: str | os.PathLike,
    name: str,
    voxel_size: Sequence[float],
    description: str = "",
    reference: str = "",
    licence: str = "",
) -> str:
    """Write ``dataset.json`` for a volume dataset: the MSD fields plus ``"voxel_size"`` (z, y, x nm) and ``"mito"``.

    Call it last: its presence marks a complete conversion. The MSD ``training`` / ``test`` lists gain a ``"mito"``
    path where a mask exists.

    Args:
        out_dir: dataset folder.
        name: dataset name.
        voxel_size: (z, y, x) or (z, xy) in nm.
        description: free text (origin, processing).
        reference: citation.
        licence: licence / terms of use.

    Returns:
        path of the written file.

    Raises:
        ValueError: malformed ``voxel_size``.
    """
    size = check_voxel_size(voxel_size, "write_volume_dataset_json")
    root = os.fspath(out_dir)
    path = write_dataset_json(
        root, name, {"unlabelled": 0}, description=description, reference=reference, licence=licence
    )
    with open(path) as handle:
        doc = json.load(handle)
    # instance labels: 0 is the only fixed class, every other value is one neuron
    doc["label_type"] = "instance"
    doc["voxel_size"] = list(size)
    for split, key in (("Tr", "training"), ("Ts", "test")):
        for item in doc.get(key, []):
            filename = os.path.basename(item["image"]) if isinstance(item, dict) else None
            if filename and os.path.exists(os.path.join(root, f"mito{split}", filename)):
                item["mito"] = f"./mito{split}/{filename}"
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2))
    return path


def label_slices_2d(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Instance labels from a foreground (cell interior) mask: 2D connected components per slice, unique across slices.

    Slice z's components get ids after the last id of slice z - 1, so no id repeats between slices. The components are
    NOT linked in 3D: one neuron crossing k slices becomes k instances (use it where only 2D membrane maps exist,
    e.g. ISBI 2012).

    Args:
        mask: (Z, Y, X) or (Y, X) array; non-zero = foreground.
        connectivity: 1 (default, 4-neighbourhood: one-pixel membranes with diagonal gaps still separate cells) or
            2 (8-neighbourhood).

    Returns:
        uint32 array of the mask's shape: 0 on background, ids 1..N in slice order, then raster order within a slice.

    Raises:
        ValueError: not 2D / 3D, or connectivity not 1 or 2.
    """
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise ValueError(f"label_slices_2d: mask must be (Y, X) or (Z, Y, X), got shape {mask.shape}.")
    if connectivity not in (1, 2):
        raise ValueError(f"label_slices_2d: connectivity must be 1 or 2, got {connectivity!r}.")
    structure = ndimage.generate_binary_structure(2, connectivity)
    volume = mask[None] if mask.ndim == 2 else mask
    out = np.zeros(volume.shape, dtype=np.uint32)
    offset = 0
    for z, plane in enumerate(volume):
        components, count = ndimage.label(plane != 0, structure=structure)
        out[z] = np.where(components > 0, components + offset, 0)
        offset += count
    return out[0] if mask.ndim == 2 else out

