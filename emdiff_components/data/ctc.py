"""Cell Tracking Challenge data: image / instance-mask datalists, single-cell crops, and the CTC sequence writer.

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515, train their mask and texture diffusion models on single cells cut out of Cell
Tracking Challenge (CTC) frames and write synthetic populations back in the CTC layout.

Layouts :func:`ctc_datalist` reads (first match wins)::

    DIR/imagesTr/<case>.tif  DIR/labelsTr/<case>.tif     MSD / nnU-Net layout (``_0000`` suffix allowed)
    DIR/img/tNN.tif          DIR/gt/man_segNN.tif        the course copy in ``ctc_2d_nuclei/<dataset>/``
    DIR/<seq>/tNNN.tif       DIR/<seq>_GT/SEG/man_segNNN.tif and / or DIR/<seq>_ST/SEG/man_segNNN.tif   CTC

Frames and masks pair by the integer frame number (``t013`` <-> ``man_seg013``, ``t13`` <-> ``man_seg13``). In the
CTC layout a frame with both a gold-truth (GT) and a silver-truth (ST) mask uses the GT one; each entry says which in
``"source"``. GT annotations of single slices of 3D stacks (``man_seg_TTT_ZZZ.tif``) are not listed (a log line
counts them); such frames fall back to their ST mask when there is one.

Layout :func:`write_single_cells` writes (what the mask and texture stages train on)::

    OUT/images/<name>_<cell id, 4+ digits>.tif    float32 crop: the cell's own pixels, ``pad_value`` elsewhere
    OUT/masks/<name>_<cell id>.png                uint8 0 / 255 binary mask (``.tif`` for 3D crops)
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .layout import DatasetError, list_images, match_cases
from .readers import ImageReadError, read_image, write_image

__all__ = ["ctc_datalist", "extract_single_cells", "write_ctc_sequence", "write_single_cells"]

logger = logging.getLogger(__name__)

_FRAME = re.compile(r"t(\d+)")
_MASK = re.compile(r"man_seg(\d+)")
_SLICE_MASK = re.compile(r"man_seg_?\d+_\d+")
_KINDS = ("GT", "ST")


def _numbered(folder: str, pattern: re.Pattern, owner: str) -> dict[int, str]:
    """Frame number -> absolute path of the files in ``folder`` whose stem matches ``pattern``."""
    found: dict[int, str] = {}
    for stem, filename in list_images(folder, owner).items():
        match = pattern.fullmatch(stem)
        if match is None:
            continue
        number = int(match.group(1))
        if number in found:
            raise DatasetError(
                f"{owner}: {found[number]!r} and {filename!r} in {folder!r} both hold frame {number}; keep one."
            )
        found[number] = os.path.join(folder, filename)
    return found


def _ctc_pairs(folder: str, sequence: str | Sequence[str] | None) -> list[dict]:
    """Entries of the CTC layout ``<seq>/tNNN.tif`` + ``<seq>_{GT,ST}/SEG/man_segNNN.tif``."""
    names = sorted(os.listdir(folder))
    if sequence is None:
        seqs = [
            n for n in names if os.path.isdir(os.path.join(folder, n)) and not n.endswith(("_GT", "_ST", "_RES"))
            and _numbered(os.path.join(folder, n), _FRAME, "ctc_datalist")
        ]
    else:
        seqs = [sequence] if isinstance(sequence, str) else [str(s) for s in sequence]
        missing = [s for s in seqs if not os.path.isdir(os.path.join(folder, s))]
        if missing:
            raise DatasetError(f"ctc_datalist: sequence folder(s) {missing} not found in {folder!r}.")
    if not seqs:
        raise DatasetError(
            f"ctc_datalist: no dataset found in {folder!r}: expected a CTC sequence <seq>/tNNN.tif with "
            "<seq>_GT/SEG or <seq>_ST/SEG masks, imagesTr/ + labelsTr/, or img/tNN.tif + gt/man_segNN.tif."
        )
    entries: list[dict] = []
    for seq in seqs:
        frames = _numbered(os.path.join(folder, seq), _FRAME, "ctc_datalist")
        masks: dict[str, dict[int, str]] = {}
        for kind in _KINDS:
            seg = os.path.join(folder, f"{seq}_{kind}", "SEG")
            masks[kind] = _numbered(seg, _MASK, "ctc_datalist") if os.path.isdir(seg) else {}
            slices = [f for f in os.listdir(seg) if _SLICE_MASK.match(f)] if os.path.isdir(seg) else []
            if slices:
                logger.info("ctc_datalist: %d single-slice annotations in %s are not listed.", len(slices), seg)
            orphans = sorted(set(masks[kind]) - set(frames))
            if orphans:
                raise DatasetError(
                    f"ctc_datalist: mask {masks[kind][orphans[0]]!r} has no image t{orphans[0]:03d} in "
                    f"{os.path.join(folder, seq)!r} ({len(orphans)} masks without image)."
                )
        both = set(masks["GT"]) & set(masks["ST"])
        for number in sorted(set(masks["GT"]) | set(masks["ST"])):
            kind = "GT" if number in masks["GT"] else "ST"
            stem = os.path.splitext(os.path.basename(frames[number]))[0]
            entries.append({"image": frames[number], "label": masks[kind][number], "name": f"{seq}_{stem}",
                            "source": kind})
        logger.info(
            "ctc_datalist: sequence %s of %s: %d frames with GT masks, %d with ST masks only (%d frames have both; "
            "GT used).", seq, folder, len(masks["GT"]), len(set(masks["ST"]) - both), len(both),
        )
    if not entries:
        where = ", ".join(os.path.join(folder, f"{s}_{k}", "SEG") for s in seqs for k in _KINDS)
        raise DatasetError(f"ctc_datalist: no masks man_segNNN.tif found in {where}.")
    return entries


def _course_pairs(folder: str) -> list[dict]:
    """Entries of the course copy ``img/tNN.tif`` + ``gt/man_segNN.tif``."""
    frames = _numbered(os.path.join(folder, "img"), _FRAME, "ctc_datalist")
    masks = _numbered(os.path.join(folder, "gt"), _MASK, "ctc_datalist")
    if not masks:
        raise DatasetError(f"ctc_datalist: no masks man_segNN.tif found in {os.path.join(folder, 'gt')!r}.")
    orphans = sorted(set(masks) - set(frames))
    if orphans:
        raise DatasetError(f"ctc_datalist: mask {masks[orphans[0]]!r} has no image t{orphans[0]:02d} in img/.")
    return [
        {"image": frames[n], "label": masks[n], "name": os.path.splitext(os.path.basename(frames[n]))[0],
         "source": "gt"}
        for n in sorted(masks)
    ]


def _msd_pairs(folder: str) -> list[dict]:
    """Entries of the ``imagesTr`` / ``labelsTr`` layout."""
    image_dir, label_dir = os.path.join(folder, "imagesTr"), os.path.join(folder, "labelsTr")
    images = list_images(image_dir, "ctc_datalist")
    labels = list_images(label_dir, "ctc_datalist") if os.path.isdir(label_dir) else {}
    if not labels:
        raise DatasetError(f"ctc_datalist: no masks found in {label_dir!r}.")
    cases = match_cases(images, labels, image_dir, "ctc_datalist")
    orphans = sorted(set(labels) - set(cases))
    if orphans:
        raise DatasetError(f"ctc_datalist: label {labels[orphans[0]]!r} in {label_dir!r} has no image.")
    return [
        {"image": os.path.join(image_dir, images[stem]), "label": os.path.join(label_dir, labels[case]),
         "name": case, "source": "labelsTr"}
        for case, stem in cases.items() if case in labels
    ]


def _read(path: str, what: str) -> np.ndarray:
    try:
        return read_image(path)
    except ImageReadError as err:
        raise DatasetError(f"ctc_datalist: cannot use {what} {path!r}: {err}") from err


def _check_mask(mask: np.ndarray, path: str, owner: str) -> None:
    integral = np.issubdtype(mask.dtype, np.floating) and np.all(mask == np.round(mask))
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_ or integral):
        raise DatasetError(f"{owner}: mask {path!r} holds non-integer values (dtype {mask.dtype}); expected cell ids.")
    if mask.size and mask.min() < 0:
        raise DatasetError(f"{owner}: mask {path!r} holds negative values ({mask.min()}); expected cell ids >= 0.")


def ctc_datalist(
    folder: str | os.PathLike, sequence: str | Sequence[str] | None = None, spatial_dims: int | None = None
) -> list[dict]:
    """List the image / instance-mask pairs of a Cell Tracking Challenge style folder, validating every file.

    Yilmaz et al., https://arxiv.org/abs/2411.11515 (training data: CTC frames and their SEG masks). The layouts are
    described in the module docstring.

    Args:
        folder: the dataset folder (e.g. ``Fluo-N2DL-HeLa/`` of the CTC download or of the course copy).
        sequence: CTC layout only: the sequence folder(s) to list, e.g. ``"01"`` or ``["01", "02"]``; default None
            lists every sequence folder holding ``tNNN`` frames.
        spatial_dims: 2 (frames) or 3 ((Z, Y, X) stacks); default None takes the first image's and requires all
            others to agree.

    Returns:
        ``[{"image": path, "label": path, "name": str, "source": "GT" | "ST" | "gt" | "labelsTr", "num_cells":
        int}]`` in sequence then frame order; the name is ``<seq>_tNNN`` (CTC), ``tNN`` (course copy) or the case.

    Raises:
        DatasetError: a missing or empty folder, no masks found, a mask without image, an unreadable file, an image /
            mask shape mismatch, a 3D file where 2D is expected or vice versa, mask values that are not cell ids, or
            masks that hold no cell at all.
        ValueError: ``sequence`` given for a layout without sequences, or ``spatial_dims`` not 2 / 3 / None.

    Example:
        >>> train = ctc_datalist("ctc_2d_nuclei/Fluo-N2DH-GOWT1")
        >>> train[0]["name"], train[0]["source"]
        ('t01', 'gt')
    """
    folder = os.fspath(folder)
    if spatial_dims not in (None, 2, 3):
        raise ValueError(f"ctc_datalist: spatial_dims must be 2, 3 or None, got {spatial_dims!r}.")
    if not os.path.isdir(folder):
        raise DatasetError(f"ctc_datalist: folder {folder!r} does not exist.")
    if not any(not n.startswith(".") for n in os.listdir(folder)):
        raise DatasetError(f"ctc_datalist: folder {folder!r} is empty.")
    flat = os.path.isdir(os.path.join(folder, "imagesTr")) or (
        os.path.isdir(os.path.join(folder, "img")) and os.path.isdir(os.path.join(folder, "gt"))
    )
    if flat and sequence is not None:
        raise ValueError(f"ctc_datalist: sequence={sequence!r} applies to the CTC layout only, not to {folder!r}.")
    if os.path.isdir(os.path.join(folder, "imagesTr")):
        entries = _msd_pairs(folder)
    elif flat:
        entries = _course_pairs(folder)
    else:
        entries = _ctc_pairs(folder, sequence)
    dims = spatial_dims
    for entry in entries:
        image, mask = _read(entry["image"], "image"), _read(entry["label"], "mask")
        dims = image.ndim if dims is None else dims
        if image.ndim != dims:
            expected = "2D frame (Y, X)" if dims == 2 else "3D stack (Z, Y, X)"
            raise DatasetError(
                f"ctc_datalist: image {entry['image']!r} has shape {image.shape}; expected a {expected} like "
                f"{'the first image' if spatial_dims is None else f'spatial_dims={spatial_dims}'}."
            )
        if mask.shape != image.shape:
            raise DatasetError(
                f"ctc_datalist: mask {entry['label']!r} has shape {mask.shape} but image {entry['image']!r} has "
                f"shape {image.shape}."
            )
        _check_mask(mask, entry["label"], "ctc_datalist")
        entry["num_cells"] = int(np.count_nonzero(np.unique(mask)))
    empty = [e["label"] for e in entries if e["num_cells"] == 0]
    if len(empty) == len(entries):
        folders = sorted({os.path.dirname(p) for p in empty})
        raise DatasetError(f"ctc_datalist: the masks in {folders} hold no cells (every mask is all zero).")
    for path in empty:
        logger.warning("ctc_datalist: mask %r holds no cells (all zero); it is listed but gives no training cell.", path)
    return entries


def _int_tuple(value: int | Sequence[int], ndim: int, owner: str, name: str) -> tuple[int, ...]:
    values = (value,) * ndim if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != ndim or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                      for v in values):
        raise ValueError(f"{owner}: {name} must be an int >= 1 or {ndim} of them, got {value!r}.")
    return tuple(int(v) for v in values)


def _nearest(array: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize with torch's ``mode="nearest"`` rule: source index floor(i * in / out)."""
    for axis, (n_in, n_out) in enumerate(zip(array.shape, size)):
        if n_in != n_out:
            array = np.take(array, (np.arange(n_out) * n_in) // n_out, axis=axis)
    return array


def _cells(image, mask, crop_size, center, min_size, skip_border, pad_value, out_size, owner):
    """Yield (cell id, image crop, mask crop) of every kept cell, with counts of the skipped ones logged."""
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim not in (2, 3) or image.shape != mask.shape:
        raise ValueError(
            f"{owner}: image and mask must share a 2D (Y, X) or 3D (Z, Y, X) shape, got {image.shape} and "
            f"{mask.shape}."
        )
    _check_mask(mask, "argument", owner)
    crop = _int_tuple(crop_size, image.ndim, owner, "crop_size")
    size = crop if out_size is None else _int_tuple(out_size, image.ndim, owner, "out_size")
    if center not in ("bbox", "centroid"):
        raise ValueError(f"{owner}: center must be 'bbox' or 'centroid', got {center!r}.")
    if not (isinstance(min_size, (int, np.integer)) and min_size >= 1):
        raise ValueError(f"{owner}: min_size must be an int >= 1, got {min_size!r}.")
    pad = float(image.min()) if pad_value is None else float(pad_value)
    mask = mask.astype(np.int64)
    skipped = {"small": 0, "border": 0, "large": 0}
    for index, box in enumerate(ndimage.find_objects(mask)):
        if box is None:
            continue
        cell_id = index + 1
        region = mask[box] == cell_id
        if int(region.sum()) < min_size:
            skipped["small"] += 1
            continue
        if skip_border and any(s.start == 0 or s.stop == n for s, n in zip(box, mask.shape)):
            skipped["border"] += 1
            continue
        if center == "bbox":  # extract_single_cells.py: int(0.5 * min + 0.5 * max) lands on crop // 2
            anchor = [int(0.5 * s.start + 0.5 * (s.stop - 1)) for s in box]
        else:
            anchor = [int(np.floor(c + 0.5)) for c in ndimage.center_of_mass(mask == cell_id)]
        shift = [c // 2 - a for c, a in zip(crop, anchor)]
        if any(s.start + o < 0 or s.stop + o > c for s, o, c in zip(box, shift, crop)):
            skipped["large"] += 1
            continue
        target = tuple(slice(s.start + o, s.stop + o) for s, o in zip(box, shift))
        image_crop = np.full(crop, pad, dtype=np.float32)
        mask_crop = np.zeros(crop, dtype=np.float32)
        image_crop[target][region] = image[box][region]  # only the cell's own pixels (not its neighbours')
        mask_crop[target][region] = 1.0
        yield cell_id, _nearest(image_crop, size), _nearest(mask_crop, size)
    if any(skipped.values()):
        logger.info(
            "%s: skipped %d cells below min_size=%d, %d touching the border, %d not fitting crop_size=%s.",
            owner, skipped["small"], min_size, skipped["border"], skipped["large"], crop,
        )


def extract_single_cells(
    image: np.ndarray,
    mask: np.ndarray,
    crop_size: int | Sequence[int] = 128,
    center: str = "bbox",
    min_size: int = 1,
    skip_border: bool = False,
    pad_value: float | None = None,
    out_size: int | Sequence[int] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut every cell of an instance mask out of its image into a centred crop on a constant background.

    Yilmaz et al., https://arxiv.org/abs/2411.11515 (single CTC cells train the mask and texture models). As the
    public ``utils/extract_single_cells.py``: a 128 x 128 crop per cell, the middle of the cell's bounding box
    (``int(0.5 * min + 0.5 * max)`` per axis) at pixel ``crop // 2``, the cell's own pixels copied and every other
    pixel (neighbouring cells too) set to the padding value, no resizing, no cell skipped. Cells whose box does not fit
    in the crop are skipped (the public code would index out of its canvas).

    Args:
        image: (Y, X) or (Z, Y, X) intensities.
        mask: instance mask of the same shape, 0 = background.
        crop_size: crop side(s), default 128 (the public code's canvas); an int or one per axis.
        center: ``"bbox"`` (default, the public rule) or ``"centroid"`` (the rounded centre of mass at ``crop // 2``).
        min_size: cells with fewer pixels are skipped; default 1 (the public code keeps every cell).
        skip_border: skip cells touching the image border; default False (the public code keeps them).
        pad_value: background of the image crops; default None = the image minimum (the public code pads with its
            ``min_val`` 32995, the camera floor of Fluo-N2DL-HeLa).
        out_size: resize the crops to this size with nearest-neighbour sampling (masks stay binary), e.g. 64 as the
            public texture dataset ``datasets/dataset_CTC.py`` does; default None keeps ``crop_size``.

    Returns:
        one ``(image crop, mask crop)`` pair of float32 arrays per kept cell, in cell-id order; masks are 0 / 1.

    Raises:
        ValueError: shapes differ or are not 2D / 3D, mask values are not cell ids, or an invalid argument.

    Example:
        >>> mask = np.zeros((20, 20), int); mask[5:9, 5:9] = 1
        >>> [(i.shape, float(m.sum())) for i, m in extract_single_cells(np.ones((20, 20)), mask, crop_size=16)]
        [((16, 16), 16.0)]
    """
    try:
        cells = _cells(image, mask, crop_size, center, min_size, skip_border, pad_value, out_size,
                       "extract_single_cells")
        return [(image_crop, mask_crop) for _, image_crop, mask_crop in cells]
    except DatasetError as err:  # the mask check names files; here the mask is an argument
        raise ValueError(str(err)) from err


def write_single_cells(datalist: Sequence[dict], out_dir: str | os.PathLike, **kwargs) -> list[dict]:
    """Extract the cells of every datalist entry and write them as the folder the mask / texture stages train on.

    Yilmaz et al., https://arxiv.org/abs/2411.11515. Layout (module docstring): ``out_dir/images/<name>_<id>.tif``
    (float32) and ``out_dir/masks/<name>_<id>.png`` (uint8 0 / 255; ``.tif`` for 3D crops), every file written
    atomically.

    Args:
        datalist: entries with ``"image"``, ``"label"`` and ``"name"``, e.g. from :func:`ctc_datalist`.
        out_dir: destination folder.
        kwargs: passed to :func:`extract_single_cells` (``crop_size``, ``center``, ``min_size``, ...).

    Returns:
        ``[{"image": crop path, "label": mask path, "name": "<name>_<id>", "cell_id": int, "source_image": path}]``.

    Raises:
        DatasetError: an entry without those keys, an unreadable file, image / mask shapes differ, or no cell kept.
        ValueError: the argument errors of :func:`extract_single_cells`.
    """
    entries = list(datalist)
    if not entries:
        raise DatasetError("write_single_cells: the datalist is empty.")
    for entry in entries:
        missing = [k for k in ("image", "label", "name") if k not in entry]
        if missing:
            raise DatasetError(f"write_single_cells: datalist entry {entry!r} lacks {missing}.")
    written: list[dict] = []
    for entry in entries:
        image, mask = _read(entry["image"], "image"), _read(entry["label"], "mask")
        if image.shape != mask.shape:
            raise DatasetError(
                f"write_single_cells: mask {entry['label']!r} has shape {mask.shape} but image {entry['image']!r} "
                f"has shape {image.shape}."
            )
        name = str(entry["name"]).replace(os.sep, "_")
        for cell_id, image_crop, mask_crop in _cells(image, mask, owner="write_single_cells", **{
            "crop_size": 128, "center": "bbox", "min_size": 1, "skip_border": False, "pad_value": None,
            "out_size": None, **kwargs,
        }):
            stem = f"{name}_{cell_id:04d}"
            image_path = os.path.join(os.fspath(out_dir), "images", f"{stem}.tif")
            mask_path = os.path.join(os.fspath(out_dir), "masks", f"{stem}{'.png' if mask.ndim == 2 else '.tif'}")
            write_image(image_path, image_crop)
            write_image(mask_path, (mask_crop * 255).astype(np.uint8))
            written.append({"image": image_path, "label": mask_path, "name": stem, "cell_id": cell_id,
                            "source_image": entry["image"]})
    if not written:
        raise DatasetError(f"write_single_cells: no cell of the {len(entries)} entries was kept; nothing written.")
    logger.info("write_single_cells: %d cells from %d images written to %s", len(written), len(entries), out_dir)
    return written


def write_ctc_sequence(
    out_dir: str | os.PathLike,
    images: Sequence[np.ndarray] | np.ndarray,
    masks: Sequence[np.ndarray] | np.ndarray,
    sequence: str = "01",
    kind: str = "ST",
) -> list[dict]:
    """Write frames and instance masks as a Cell Tracking Challenge sequence: ``<seq>/tNNN.tif``, ``<seq>_<kind>/SEG``.

    Yilmaz et al., https://arxiv.org/abs/2411.11515 (synthetic populations are stored as CTC data; the public
    ``utils/combine_images.py`` writes ``01/NNNN.tif`` and ``01_ST/NNNN.tif`` as uint8, which wraps cell ids above
    255; here the CTC names and uint16 masks). Frames are numbered from 0 with 3 digits (more when there are more
    than 1000 frames); every file is validated first and then written atomically.

    Args:
        out_dir: dataset folder; ``<sequence>/`` and ``<sequence>_<kind>/SEG/`` are created in it.
        images: frames, each (Y, X) or (Z, Y, X); their dtype is kept (float32 TIFF is fine).
        masks: instance masks of the same shapes, cell ids 0..65535 (stored as uint16).
        sequence: sequence folder name, default ``"01"``.
        kind: ``"ST"`` (silver truth, default) or ``"GT"``.

    Returns:
        ``[{"image": path, "label": path, "name": "<seq>_tNNN", "source": kind}]``, as :func:`ctc_datalist` lists.

    Raises:
        ValueError: no frames, different numbers of frames and masks, shapes that differ or are not 2D / 3D, mask
            values outside 0..65535 or not integers, a bad ``sequence`` or ``kind``.
    """
    if kind not in _KINDS:
        raise ValueError(f"write_ctc_sequence: kind must be 'ST' or 'GT', got {kind!r}.")
    if not isinstance(sequence, str) or not sequence or os.sep in sequence or sequence.startswith("."):
        raise ValueError(f"write_ctc_sequence: sequence must be a folder name like '01', got {sequence!r}.")
    images, masks = [np.asarray(i) for i in images], [np.asarray(m) for m in masks]
    if not images or len(images) != len(masks):
        raise ValueError(f"write_ctc_sequence: got {len(images)} images and {len(masks)} masks; need equal, >= 1.")
    for t, (image, mask) in enumerate(zip(images, masks)):
        if image.ndim not in (2, 3) or image.shape != mask.shape:
            raise ValueError(
                f"write_ctc_sequence: frame {t}: image {image.shape} and mask {mask.shape} must share a 2D or 3D shape."
            )
        integral = np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_ or np.all(mask == np.round(mask))
        if not integral or (mask.size and (mask.min() < 0 or mask.max() > np.iinfo(np.uint16).max)):
            raise ValueError(f"write_ctc_sequence: frame {t}: mask values must be integer cell ids in 0..65535.")
    digits = max(3, len(str(len(images) - 1)))
    entries = []
    for t, (image, mask) in enumerate(zip(images, masks)):
        image_path = os.path.join(os.fspath(out_dir), sequence, f"t{t:0{digits}d}.tif")
        mask_path = os.path.join(os.fspath(out_dir), f"{sequence}_{kind}", "SEG", f"man_seg{t:0{digits}d}.tif")
        write_image(image_path, image)
        write_image(mask_path, mask.astype(np.uint16))
        entries.append({"image": image_path, "label": mask_path, "name": f"{sequence}_t{t:0{digits}d}", "source": kind})
    logger.info("write_ctc_sequence: %d frames written to %s (%s/, %s_%s/SEG/)", len(images), out_dir, sequence,
                sequence, kind)
    return entries
