"""Whole-volume network predictions from overlapping, Gaussian-blended tiles (2D and 3D)."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from monai.inferers import sliding_window_inference

__all__ = ["blend_weights", "network_stride", "tile_size", "tiled_prediction"]


def _per_axis(value: Sequence[int] | int, spatial_dims: int, name: str) -> tuple[int, ...]:
    values = (int(value),) * spatial_dims if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != spatial_dims or any(v < 1 for v in values):
        raise ValueError(
            f"tiled_prediction: {name} must be a positive int or {spatial_dims} positive ints, got {value!r}."
        )
    return values


def network_stride(network: Callable[..., torch.Tensor]) -> Sequence[int] | int:
    """The network's total down-sampling, its ``stride`` attribute (that of ``network.module`` under
    ``DistributedDataParallel``); 1 for a callable without one (a function of the whole input, e.g. in tests).

    Every inferer asks this one function, so the tile size depends on the network alone.
    """
    for candidate in (network, getattr(network, "module", None)):
        stride = getattr(candidate, "stride", None)
        if stride is not None:
            return stride
    return 1


def tile_size(
    roi_size: Sequence[int] | int, spatial_shape: Sequence[int], stride: Sequence[int] | int = 1
) -> tuple[int, ...]:
    """Tile size per axis: ``roi_size`` shrunk to the volume, rounded up to a multiple of the network stride.

    Args:
        roi_size: the wanted tile (usually the training patch), one int or one per spatial axis.
        spatial_shape: the volume's spatial shape ``([Z,] Y, X)``.
        stride: the network's total down-sampling per axis (default 1); one int or one per axis.

    Returns:
        ``ceil(min(roi, size) / stride) * stride`` per axis. A tile larger than the volume (volume not a multiple of
        the stride) is filled by padding, done by the sliding-window inferer.
    """
    dims = len(spatial_shape)
    roi = _per_axis(roi_size, dims, "roi_size")
    div = _per_axis(stride, dims, "stride")
    return tuple(int(math.ceil(min(r, int(s)) / d)) * d for r, s, d in zip(roi, spatial_shape, div))


def blend_weights(
    size: Sequence[int], mode: str = "gaussian", sigma_scale: float = 0.125, min_weight: float = 0.0
) -> torch.Tensor:
    """Per-voxel weight of a tile when tiles are blended: a separable Gaussian or constant.

    As MONAI's ``compute_importance_map`` (Gaussian of sigma ``sigma_scale * size`` per axis, peak 1), except that
    MONAI raises every weight to at least 1e-3. In 2D / 3D that floor flattens a tile's corners and edge bands (where
    the product of 1D weights is below 1e-3) so that a neighbour's zero-padded border voxels get the same weight as
    the other tiles there, which shows as seams in diffusion sampling. ``min_weight=1e-3`` reproduces MONAI.

    Args:
        size: the tile's spatial size.
        mode: ``"gaussian"`` (default) or ``"constant"`` (all ones).
        sigma_scale: Gaussian sigma as a fraction of the tile size per axis, default 0.125 (MONAI's).
        min_weight: lower bound of the weights, default 0 (none; the Gaussian stays > 1e-30 for usual tiles).

    Returns:
        Float32 weights of shape ``size``.
    """
    if mode == "constant":
        return torch.ones(tuple(size), dtype=torch.float32)
    weights = torch.ones((), dtype=torch.float32)
    for length in size:
        x = torch.arange(-(length - 1) / 2.0, (length - 1) / 2.0 + 1, dtype=torch.float32)
        weights = weights.unsqueeze(-1) * torch.exp(x**2 / (-2 * (length * sigma_scale) ** 2))
    return weights.clamp(min=max(float(weights.min()), min_weight, 1e-30))


def tiled_prediction(
    network: Callable[..., torch.Tensor],
    sample: torch.Tensor,
    condition: torch.Tensor,
    t: int | torch.Tensor,
    roi_size: Sequence[int] | int,
    sw_batch_size: int = 1,
    overlap: float = 0.25,
    stride: Sequence[int] | int = 1,
    mode: str = "gaussian",
    padding_mode: str = "reflect",
    min_weight: float = 0.0,
) -> torch.Tensor:
    """Evaluate ``network(window_sample, t, window_condition)`` on overlapping tiles and blend them into one volume.

    Diffusion samplers must update the whole volume at once so that all tiles share one noise level and one x_t;
    only the network call is tiled (MONAI ``SlidingWindowInferer``). Gaussian weights (``mode="gaussian"``, sigma =
    0.125 of the tile, without MONAI's 1e-3 floor by default) make a tile's border voxels, where zero padding distorts
    the network, count exp(-8) ~ 3e-4 of its centre at the middle of an edge and ~1e-7 at a 2D corner, so a
    neighbouring tile's centre decides there and no seams form (``tests/diffusion/test_tiling.py`` measures it).
    ``mode="constant"`` with ``overlap=0`` reproduces the plain non-overlapping tiling of the NeuroDiff reference (with
    its seams), for comparison.

    Args:
        network: called as ``network(x, timesteps, condition)`` with ``timesteps`` a ``(n,)`` long tensor.
        sample: ``(B, C, [Z,] Y, X)``, e.g. x_t.
        condition: ``(B, C_cond, [Z,] Y, X)``, same batch and spatial shape as ``sample``; tiled together with it.
        t: the time step shared by the whole batch (int or 0-d tensor).
        roi_size: wanted tile size (see :func:`tile_size`).
        sw_batch_size: tiles per network call, default 1.
        overlap: tile overlap fraction in [0, 1), default 0.25.
        stride: the network's total stride per axis (tiles are rounded up to it), default 1.
        mode: blending weights, ``"gaussian"`` (default) or ``"constant"``.
        padding_mode: how volumes smaller than a tile are padded (``torch.nn.functional.pad`` mode), default
            ``"reflect"``.
        min_weight: floor of the blending weights, default 0; 1e-3 gives MONAI's ``SlidingWindowInferer`` weights.

    Returns:
        The blended prediction ``(B, C_out, [Z,] Y, X)``.
    """
    if sample.ndim not in (4, 5) or condition.ndim != sample.ndim:
        raise ValueError(
            "tiled_prediction: sample and condition must both be (B, C, Y, X) or (B, C, Z, Y, X), got "
            f"{tuple(sample.shape)} and {tuple(condition.shape)}."
        )
    if sample.shape[0] != condition.shape[0] or sample.shape[2:] != condition.shape[2:]:
        raise ValueError(
            "tiled_prediction: sample and condition differ in batch or spatial shape: "
            f"{tuple(sample.shape)} vs {tuple(condition.shape)}."
        )
    if not 0 <= overlap < 1:
        raise ValueError(f"tiled_prediction: overlap must be in [0, 1), got {overlap}.")
    if sw_batch_size < 1:
        raise ValueError(f"tiled_prediction: sw_batch_size must be >= 1, got {sw_batch_size}.")
    if mode not in ("gaussian", "constant"):
        raise ValueError(f"tiled_prediction: mode must be 'gaussian' or 'constant', got {mode!r}.")
    channels = sample.shape[1]
    step = int(t)

    def tile_forward(window: torch.Tensor) -> torch.Tensor:
        steps = torch.full((window.shape[0],), step, device=window.device, dtype=torch.long)
        return network(window[:, :channels], steps, window[:, channels:])

    tile = tile_size(roi_size, sample.shape[2:], stride)
    weights = blend_weights(tile, mode, min_weight=min_weight).to(device=sample.device, dtype=sample.dtype)
    # the condition rides along as extra channels so that every window sees the matching crop of it
    return sliding_window_inference(
        torch.cat([sample, condition.to(sample.dtype)], dim=1),
        roi_size=tile,
        sw_batch_size=sw_batch_size,
        predictor=tile_forward,
        overlap=overlap,
        mode=mode,
        padding_mode=padding_mode,
        roi_weight_map=weights[None, None],
    )
