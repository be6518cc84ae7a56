"""Slice-consistent initial noise for sampling 3D stacks slice by slice with a 2D diffusion model (cascaded cells).

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515, section on 3D texture: every slice ``s`` of a stack starts from

    x_T(s) = rho / sqrt(1 + rho^2) * base + 1 / sqrt(1 + rho^2) * eps_s                                   (1)

with ``base ~ N(0, I)`` shared by all slices and ``eps_s ~ N(0, I)`` drawn per slice. Legend: rho = the paper's
texture-consistency strength (0.7 in the public code), base = ``c_cmn``, eps_s = ``c_{s,unq}``.

Statistics of (1): each slice has variance ``(rho^2 + 1) / (1 + rho^2) = 1`` (a valid x_T for a model trained on
N(0, I)) and two different slices have covariance = correlation ``rho^2 / (1 + rho^2)`` (0.329 at rho = 0.7); rho = 0
gives independent slices, rho -> inf identical ones. With a deterministic sampler (DDIM, eta = 0) this initial
correlation is the only link between neighbouring slices.

The public code (``cldm/ddim_hacked_3d.py``, ``ddim_sampling``) mixes with the same formula (its ``alpha`` is rho,
``torch.tensor(0.7)``), but the base is the x_T of the call made with ``same_base`` unset, which is stored and used
unmixed for that slice. That slice (the first one sampled) then correlates ``rho / sqrt(1 + rho^2)`` (0.573) with the
others instead of 0.329. ``base_slice`` reproduces this; the default (``None``) mixes every slice as eq. (1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["SliceConsistentNoise", "slice_consistent_noise"]


def _check(rho: float, slice_dim: int, ndim: int, owner: str) -> int:
    """Validated ``slice_dim`` as a non-negative axis of an ``ndim``-dimensional tensor."""
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho) or rho < 0:
        raise ValueError(f"{owner}: rho must be a finite number >= 0, got {rho!r}.")
    if isinstance(slice_dim, bool) or not isinstance(slice_dim, int) or not -ndim <= slice_dim < ndim:
        raise ValueError(f"{owner}: slice_dim must be an int axis of a {ndim}-d shape, got {slice_dim!r}.")
    return slice_dim % ndim


def slice_consistent_noise(
    shape: Sequence[int],
    rho: float = 0.7,
    slice_dim: int = 2,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    base_slice: int | None = None,
) -> torch.Tensor:
    """Gaussian noise whose slices along ``slice_dim`` share a common part (eq. 1 of the module docstring).

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515.

    Draw order (fixed, so a seed gives the same noise): ``base`` with ``shape[slice_dim] = 1`` first, then ``eps`` of
    the full ``shape``, both from ``generator`` in float32 on the generator's device (the CPU without one), then cast
    and moved.

    Args:
        shape: the noise shape, e.g. ``(B, C, Z, Y, X)``; any number of dimensions >= 1.
        rho: consistency strength >= 0, default 0.7 (``cldm/ddim_hacked_3d.py``); 0 gives independent slices.
        slice_dim: the axis along which slices share ``base``, default 2 (Z of ``(B, C, Z, Y, X)``); negative counts
            from the end. Every index of the other axes (batch, channel, pixel) has its own base value.
        generator: draws ``base`` and ``eps``; ``None`` uses torch's global generator.
        dtype: dtype of the result, default float32.
        device: device of the result, default: the generator's (CPU).
        base_slice: ``None`` (default): every slice follows eq. (1). An index: that slice is ``base`` itself,
            unmixed, as the public sampler's first call (see the module docstring).

    Returns:
        Noise of ``shape``: unit variance per element; correlation ``rho^2 / (1 + rho^2)`` between two mixed slices
        and ``rho / sqrt(1 + rho^2)`` between ``base_slice`` and a mixed slice.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"slice_consistent_noise: shape must be non-empty positive ints, got {shape!r}.")
    axis = _check(rho, slice_dim, len(shape), "slice_consistent_noise")
    if base_slice is not None and not -shape[axis] <= base_slice < shape[axis]:
        raise ValueError(
            f"slice_consistent_noise: base_slice must index one of the {shape[axis]} slices, got {base_slice!r}."
        )
    draw_device = generator.device if generator is not None else torch.device("cpu")
    base_shape = shape[:axis] + (1,) + shape[axis + 1 :]
    base = torch.randn(base_shape, generator=generator, dtype=torch.float32, device=draw_device)
    eps = torch.randn(shape, generator=generator, dtype=torch.float32, device=draw_device)
    scale = 1.0 / math.sqrt(1.0 + rho * rho)
    noise = rho * scale * base + scale * eps  # eq. (1), broadcast along slice_dim
    if base_slice is not None:
        index = base_slice % shape[axis]
        noise.narrow(axis, index, 1).copy_(base)
    return noise.to(dtype=dtype, device=device if device is not None else draw_device)


class SliceConsistentNoise:
    """A noise provider for the samplers: ``provider(shape, generator, dtype, device)`` -> slice-consistent x_T.

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515. Holds the parameters of :func:`slice_consistent_noise` so a bundle config can
    hand it to an inferer (``MaskConditionedTextureInferer(noise=...)``), which calls it for the initial noise of
    every stack.

    Args:
        rho: consistency strength >= 0, default 0.7.
        slice_dim: axis of the slices, default 2 (Z of ``(B, C, Z, Y, X)``).
        base_slice: ``None`` (default) or the slice that is the base itself (public-code behaviour).

    Example::

        provider = SliceConsistentNoise(rho=0.7)
        x_T = provider((1, 1, 16, 64, 64), generator=torch.Generator().manual_seed(0))  # (B, C, Z, Y, X)
    """

    def __init__(self, rho: float = 0.7, slice_dim: int = 2, base_slice: int | None = None) -> None:
        # any int axis is valid until a shape is known: check it against the smallest shape that has it
        ndim = abs(slice_dim) + (slice_dim >= 0) if isinstance(slice_dim, int) and not isinstance(slice_dim, bool) else 1
        _check(rho, slice_dim, ndim, "SliceConsistentNoise")
        self.rho = float(rho)
        self.slice_dim = slice_dim
        self.base_slice = base_slice

    def __call__(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """Noise of ``shape`` (see :func:`slice_consistent_noise`)."""
        return slice_consistent_noise(
            shape, self.rho, self.slice_dim, generator=generator, dtype=dtype, device=device, base_slice=self.base_slice
        )

    def __repr__(self) -> str:
        return f"SliceConsistentNoise(rho={self.rho}, slice_dim={self.slice_dim}, base_slice={self.base_slice})"
