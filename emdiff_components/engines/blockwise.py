"""Predict a volume of any size block by block with overlap, in memory bounded by one block.

NeuroDiff (Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation",
https://arxiv.org/abs/2601.15779) segments neurons from affinities a 3D U-Net predicts over whole EM volumes. Here the
volume is cut into blocks; each block is read with ``context`` voxels of margin on every side (reflect-padded where the
margin leaves the volume, as the public code pads the whole volume with ``np.pad(mode="reflect")``), predicted, and only
its centre is written. With ``context`` at least the network's receptive-field radius the result equals predicting
the padded whole volume at once, yet no whole-volume array is ever held. MONAI's ``SlidingWindowInferer`` needs the
whole input as one tensor and blends overlaps instead, so it cannot stream from and to disk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from monai.utils import optional_import

from ..data.arrays import LazyVolume, _split_volume_path, create_volume, open_volume

__all__ = ["predict_blockwise", "predict_volume_file", "slice_intensity_range"]

logger = logging.getLogger(__name__)
tqdm, _has_tqdm = optional_import("tqdm", name="tqdm")

_PADDING = {"reflect": "reflect", "replicate": "edge", "constant": "constant"}
_NORMALIZE = ("slice", "volume", None)

Region = tuple[slice, slice, slice]


class _Plan(NamedTuple):
    block: tuple[int, int, int]  # written part of a block (z, y, x)
    margin: tuple[int, int, int]  # context read on each side
    window: tuple[int, int, int]  # network input: block + 2 * margin
    padding_mode: str
    normalize: str | None


def slice_intensity_range(source: Any, slices_per_read: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum of every z-slice of a (Z, Y, X) volume, reading a few slices at a time.

    The first of two passes over a volume too large for memory: per-slice normalisation (NeuroDiff scales every
    z-slice to [-1, 1], :class:`~emdiff_components.transforms.ScaleSliceIntensity`) needs the statistics of the whole
    slice, which one block does not see.

    Args:
        source: (Z, Y, X) array-like with numpy slicing (:class:`~emdiff_components.data.LazyVolume`, ``np.ndarray``).
        slices_per_read: z-slices read at once, default 8.

    Returns:
        ``(low, high)``, two float64 arrays of shape (Z,).

    Raises:
        ValueError: ``source`` not 3D, ``slices_per_read`` not a positive int, or a slice holding NaN or inf.
    """
    _check_source(source, "slice_intensity_range")
    if not isinstance(slices_per_read, int) or slices_per_read < 1:
        raise ValueError(f"slice_intensity_range: slices_per_read must be a positive int, got {slices_per_read!r}.")
    depth = source.shape[0]
    low, high = np.empty(depth), np.empty(depth)
    for z0 in range(0, depth, slices_per_read):
        chunk = np.asarray(source[z0 : z0 + slices_per_read])
        low[z0 : z0 + len(chunk)] = chunk.min(axis=(1, 2))
        high[z0 : z0 + len(chunk)] = chunk.max(axis=(1, 2))
    bad = np.flatnonzero(~(np.isfinite(low) & np.isfinite(high)))
    if bad.size:
        raise ValueError(f"slice_intensity_range: {_name(source)} holds NaN or inf in z-slices {bad[:10].tolist()}.")
    return low, high


def _name(source: Any) -> str:
    return repr(source.path) if isinstance(source, LazyVolume) else "the source array"


def _check_source(source: Any, func: str) -> None:
    if len(getattr(source, "shape", ())) != 3:
        raise ValueError(
            f"{func}: source must be a 3D (Z, Y, X) volume, got shape {getattr(source, 'shape', None)} of {_name(source)}."
        )


def _triple(value: Any, name: str, func: str, minimum: int) -> tuple[int, int, int]:
    values = (value,) * 3 if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        values = tuple(values)
    except TypeError:
        values = ()
    if len(values) != 3 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in values
    ):
        raise ValueError(f"{func}: {name} must be an int or 3 ints >= {minimum} (z, y, x), got {value!r}.")
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def _check_plan(block_shape, context, divisible_by, padding_mode, normalize, func) -> _Plan:
    block = _triple(block_shape, "block_shape", func, 1)
    margin = _triple(context, "context", func, 0)
    if padding_mode not in _PADDING:
        raise ValueError(f"{func}: padding_mode must be one of {sorted(_PADDING)}, got {padding_mode!r}.")
    if normalize not in _NORMALIZE:
        raise ValueError(f"{func}: normalize must be one of {list(_NORMALIZE)}, got {normalize!r}.")
    window = tuple(b + 2 * c for b, c in zip(block, margin))
    if divisible_by is not None:
        div = _triple(divisible_by, "divisible_by", func, 1)
        if any(w % d for w, d in zip(window, div)):
            hint = tuple(b + (-w) % d for b, w, d in zip(block, window, div))
            raise ValueError(
                f"{func}: block_shape + 2 * context = {window} is not divisible by divisible_by={div} (the network's "
                f"total stride); e.g. block_shape={hint} with context={margin}."
            )
    return _Plan(block, margin, window, padding_mode, normalize)


def _axis_starts(size: int, block: int) -> list[int]:
    """Block starts along one axis; the last block is moved back to end at the border (the public code's
    ``bound_patch``), so every block has the full size unless the volume is smaller than one block."""
    if size <= block:
        return [0]
    starts = list(range(0, size - block, block))
    return starts + [size - block]


def _read_normalised(source: Any, region: Region, stats: tuple | None, minv: float, maxv: float) -> np.ndarray:
    """Read ``region`` of the volume as float32 (Z, Y, X), scaled with the whole-slice ``stats`` (low, high)."""
    data = torch.as_tensor(np.asarray(source[region]), dtype=torch.float32)
    if stats is not None:
        # the formula of ScaleSliceIntensity with whole-slice statistics: constant slices map to the middle
        low = torch.as_tensor(stats[0][region[0]], dtype=torch.float32).view(-1, 1, 1)
        high = torch.as_tensor(stats[1][region[0]], dtype=torch.float32).view(-1, 1, 1)
        span = high - low
        unit = torch.where(span > 0, (data - low) / torch.where(span > 0, span, 1.0), 0.5)
        data = unit * (maxv - minv) + minv
    return data.numpy()


def _predictions(
    predictor: Callable, source: Any, plan: _Plan, device: Any, progress: bool, slices_per_read: int
) -> Iterator[tuple[Region, np.ndarray]]:
    """Yield (written region, prediction (C, bz, by, bx) as float32 numpy) block by block."""
    block, margin, window = plan.block, plan.margin, plan.window
    shape = tuple(int(n) for n in source.shape)
    stats, normalize = None, plan.normalize
    if normalize is not None:
        stats = slice_intensity_range(source, slices_per_read)
        if normalize == "volume":
            stats = (np.full_like(stats[0], stats[0].min()), np.full_like(stats[1], stats[1].max()))
    starts = [_axis_starts(n, b) for n, b in zip(shape, block)]
    grid = [len(s) for s in starts]
    logger.info(
        "predict_blockwise: volume %s in a %s grid of %d blocks %s (+ context %s, network input %s)",
        shape,
        "x".join(map(str, grid)),
        int(np.prod(grid)),
        block,
        margin,
        window,
    )
    if device is None:
        params = list(predictor.parameters()) if isinstance(predictor, torch.nn.Module) else []
        device = params[0].device if params else torch.device("cpu")
    corners = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    if progress and _has_tqdm:
        corners = tqdm(corners, desc="blocks", leave=False)
    mode = _PADDING[plan.padding_mode]
    for corner in corners:
        sizes = [min(b, n) for b, n in zip(block, shape)]
        lo = [max(0, c - m) for c, m in zip(corner, margin)]
        hi = [min(n, c + s + m) for c, s, m, n in zip(corner, sizes, margin, shape)]
        # margin missing at the border, plus the rest of the network input when the volume is smaller than a block
        before = [m - (c - lo_) for c, m, lo_ in zip(corner, margin, lo)]
        after = [w - b_ - (h - lo_) for w, b_, h, lo_ in zip(window, before, hi, lo)]
        data = _read_normalised(source, tuple(slice(a, b) for a, b in zip(lo, hi)), stats, -1.0, 1.0)
        if any(before) or any(after):
            data = np.pad(data, list(zip(before, after)), mode=mode)
        with torch.no_grad():
            pred = predictor(torch.from_numpy(np.ascontiguousarray(data))[None, None].to(device))
        if (
            not isinstance(pred, torch.Tensor)
            or pred.ndim != 5
            or pred.shape[0] != 1
            or tuple(pred.shape[2:]) != window
        ):
            raise ValueError(
                f"predict_blockwise: predictor must map (1, 1, *{window}) to (1, C, *{window}), got "
                f"{tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__}."
            )
        centre = tuple(slice(m, m + s) for m, s in zip(margin, sizes))
        out = pred[0][(slice(None), *centre)].float().cpu().numpy()
        yield tuple(slice(c, c + s) for c, s in zip(corner, sizes)), out


def _store(target: Any, region: Region, pred: np.ndarray) -> None:
    dtype = np.dtype(target.dtype)
    if dtype == np.uint8:  # probabilities stored as round(255 p)
        pred = np.rint(np.clip(pred, 0.0, 1.0) * 255.0)
    target[(slice(None), *region)] = pred.astype(dtype, copy=False)


def _check_target_dtype(dtype: Any, func: str) -> None:
    dtype = np.dtype(dtype)
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{func}: the output dtype must be floating or uint8 (round(255 p)), got {dtype}.")


def predict_blockwise(
    predictor: Callable[[torch.Tensor], torch.Tensor],
    source: Any,
    target: Any,
    block_shape: int | Sequence[int],
    context: int | Sequence[int],
    divisible_by: int | Sequence[int] | None = None,
    padding_mode: str = "reflect",
    normalize: str | None = "slice",
    device: str | torch.device | None = None,
    progress: bool = True,
    slices_per_read: int = 8,
) -> Any:
    """Predict ``target`` from ``source`` block by block: read a block plus ``context``, write the block's centre.

    Every block of ``block_shape`` voxels (the written, valid part) is read with ``context`` voxels of margin on each
    side, so the network input is always ``block_shape + 2 * context``: where the margin leaves the volume, and where
    the volume is smaller than a block (it is padded up to one network input and the output cropped back), it is
    padded with ``padding_mode``. The last block along an axis is moved back to end at the border (it overlaps its
    neighbour, which it overwrites with the same values for a translation-equivariant network). With ``context`` >= the
    network's receptive-field radius, the result equals ``predictor(pad(normalised volume, context))`` cropped to the
    volume. Memory: one block of input and output; per-slice statistics come from a streaming first pass
    (:func:`slice_intensity_range`). Put the predictor in ``eval()`` mode first (batch norm in training mode normalises
    each block on its own statistics).

    Args:
        predictor: callable (e.g. a network) mapping a float32 tensor (1, 1, Zc, Yc, Xc) to (1, C, Zc, Yc, Xc);
            run under ``torch.no_grad``.
        source: (Z, Y, X) array-like with numpy slicing: :func:`~emdiff_components.data.open_volume` or ``np.ndarray``.
        target: (C, Z, Y, X) writable array-like of floating dtype or uint8 (stores ``round(255 * clip(p, 0, 1))``),
            e.g. :func:`~emdiff_components.data.create_volume`.
        block_shape: written block (z, y, x), or one int for all axes; e.g. (16, 128, 128).
        context: margin (z, y, x) read around each block, >= 0; e.g. the receptive-field radius.
        divisible_by: the network's required input divisibility (z, y, x), e.g. (1, 16, 16); default None (no check).
        padding_mode: ``"reflect"`` (default, as the public code), ``"replicate"`` or ``"constant"`` (zeros after
            normalisation).
        normalize: ``"slice"`` (default: every z-slice min-max to [-1, 1] on its whole-slice range, as
            ``ScaleSliceIntensity``), ``"volume"`` (one range for the volume) or None (cast to float32 only).
        device: where the predictor runs; default None: the device of its first parameter, else CPU.
        progress: tqdm bar over blocks (when tqdm is installed), default True.
        slices_per_read: z-slices per read in the statistics pass, default 8.

    Returns:
        ``target``.

    Raises:
        ValueError: bad ``block_shape`` / ``context`` / ``divisible_by`` (block + 2 context not divisible), a source
            that is not 3D, a target of the wrong shape or dtype, or a predictor output of the wrong shape.

    Example::

        with open_volume("raw.h5:/main", ndim=3) as raw, create_volume("affs.zarr", (3, *raw.shape)) as affs:
            predict_blockwise(net.eval(), raw, affs, block_shape=(16, 128, 128), context=(4, 16, 16))
    """
    func = "predict_blockwise"
    plan = _check_plan(block_shape, context, divisible_by, padding_mode, normalize, func)
    _check_source(source, func)
    shape = tuple(int(n) for n in source.shape)
    if len(getattr(target, "shape", ())) != 4 or tuple(target.shape[1:]) != shape:
        raise ValueError(f"{func}: target must have shape (C, *{shape}), got {getattr(target, 'shape', None)}.")
    _check_target_dtype(target.dtype, func)
    for region, pred in _predictions(predictor, source, plan, device, progress, slices_per_read):
        if pred.shape[0] != target.shape[0]:
            raise ValueError(f"{func}: predictor gives {pred.shape[0]} channels, target has {target.shape[0]}.")
        _store(target, region, pred)
    return target


def predict_volume_file(
    predictor: Callable[[torch.Tensor], torch.Tensor],
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    block_shape: int | Sequence[int],
    context: int | Sequence[int],
    output_dtype: str = "float32",
    divisible_by: int | Sequence[int] | None = None,
    padding_mode: str = "reflect",
    normalize: str | None = "slice",
    device: str | torch.device | None = None,
    progress: bool = True,
    slices_per_read: int = 8,
) -> tuple[int, ...]:
    """Predict a volume file into a new volume file, block by block (:func:`predict_blockwise`), written atomically.

    The output, (C, Z, Y, X) with C taken from the predictor's first block, is chunked like the blocks and carries the
    input's voxel size where the format can (zarr / HDF5 attribute ``resolution``, ImageJ TIFF); it reaches
    ``output_path`` only when every block is written (an error or a kill leaves no file there). Paths and formats as
    :func:`~emdiff_components.data.open_volume` / :func:`~emdiff_components.data.create_volume`; the input may carry
    leading singleton axes, e.g. (1, Z, Y, X).

    Args:
        predictor, block_shape, context, divisible_by, padding_mode, normalize, device, progress, slices_per_read:
            as :func:`predict_blockwise`.
        input_path: (Z, Y, X) volume (zarr, HDF5, TIFF, NPY).
        output_path: the new volume; replaced if it exists.
        output_dtype: ``"float32"`` (default, as the public code stores affinities) or ``"uint8"`` (``round(255 p)``).

    Returns:
        the output shape (C, Z, Y, X).

    Raises:
        ImageReadError: unreadable input, unknown extension, missing key, or an input that is not 3D.
        ValueError: as :func:`predict_blockwise`; ``output_dtype`` not "float32" / "uint8"; output path = input path.
    """
    func = "predict_volume_file"
    if output_dtype not in ("float32", "uint8"):
        raise ValueError(f"{func}: output_dtype must be 'float32' or 'uint8', got {output_dtype!r}.")
    plan = _check_plan(block_shape, context, divisible_by, padding_mode, normalize, func)
    out_file = _split_volume_path(output_path, func)[0]  # checked before the long statistics pass
    if os.path.abspath(out_file) == os.path.abspath(_split_volume_path(input_path, func)[0]):
        raise ValueError(f"{func}: output_path {os.fspath(output_path)!r} is the input file; write a new file.")
    with open_volume(input_path, ndim=3) as source:
        stream = _predictions(predictor, source, plan, device, progress, slices_per_read)
        region, pred = next(stream)
        out_shape = (pred.shape[0], *source.shape)
        chunks = (pred.shape[0], *plan.block)
        with create_volume(output_path, out_shape, output_dtype, chunks=chunks, like=source) as target:
            _store(target, region, pred)
            for region, pred in stream:
                _store(target, region, pred)
    logger.info("predict_volume_file: wrote %s %s %s", os.fspath(output_path), out_shape, output_dtype)
    return out_shape
