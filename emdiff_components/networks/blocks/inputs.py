"""Input checks shared by the conditional diffusion networks (``network(x_t, timesteps, condition)``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["check_conditional_inputs"]


def check_conditional_inputs(
    name: str,
    x: torch.Tensor,
    timesteps: torch.Tensor | int | float,
    condition: torch.Tensor,
    in_channels: int,
    cond_channels: int,
    stride: int | Sequence[int],
    spatial_dims: int = 2,
) -> torch.Tensor:
    """Check x (B, in_channels, *spatial) and condition (B, cond_channels, *spatial), the sizes divisible by ``stride``.

    Raises ``ValueError`` starting with ``name`` (the network's class) that gives the expected and the actual shapes.

    Args:
        stride: the network's total stride, one int for every axis or one per spatial axis.
        spatial_dims: 2 (H, W) or 3 (D, H, W).

    Returns:
        ``timesteps`` as a ``(B,)`` tensor on ``x``'s device (a scalar is broadcast over the batch).
    """
    axes = "D, H, W" if spatial_dims == 3 else "H, W"
    if x.ndim != spatial_dims + 2 or x.shape[1] != in_channels:
        raise ValueError(f"{name}: x must have shape (B, {in_channels}, {axes}), got {tuple(x.shape)}.")
    b = x.shape[0]
    if condition.ndim != spatial_dims + 2 or condition.shape[1] != cond_channels or condition.shape[0] != b:
        raise ValueError(
            f"{name}: condition must have shape ({b}, {cond_channels}, {axes}), got {tuple(condition.shape)}."
        )
    if condition.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"{name}: x {tuple(x.shape[2:])} and condition {tuple(condition.shape[2:])} differ in spatial size."
        )
    strides = (stride,) * spatial_dims if isinstance(stride, int) else tuple(stride)
    if any(n % s for n, s in zip(x.shape[2:], strides)):
        shown = stride if isinstance(stride, int) else tuple(strides)
        raise ValueError(
            f"{name}: spatial size {tuple(x.shape[2:])} must be divisible by {shown} (the total stride)."
        )
    if not isinstance(timesteps, torch.Tensor):
        timesteps = torch.as_tensor(timesteps, device=x.device)
    if timesteps.ndim == 0:
        timesteps = timesteps.expand(b)
    if timesteps.shape != (b,):
        raise ValueError(f"{name}: timesteps must have shape ({b},), got {tuple(timesteps.shape)}.")
    return timesteps.to(x.device)
