"""Input checks shared by the conditional diffusion networks (``network(x_t, timesteps, condition)``)."""

from __future__ import annotations

import torch

__all__ = ["check_conditional_inputs"]


def check_conditional_inputs(
    name: str,
    x: torch.Tensor,
    timesteps: torch.Tensor | int | float,
    condition: torch.Tensor,
    in_channels: int,
    cond_channels: int,
    stride: int,
) -> torch.Tensor:
    """Check x (B, in_channels, H, W) and condition (B, cond_channels, H, W), with H and W divisible by ``stride``.

    Raises ``ValueError`` starting with ``name`` (the network's class) that gives the expected and the actual shapes.

    Returns:
        ``timesteps`` as a ``(B,)`` tensor on ``x``'s device (a scalar is broadcast over the batch).
    """
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name}: x must have shape (B, {in_channels}, H, W), got {tuple(x.shape)}.")
    b, _, h, w = x.shape
    if condition.ndim != 4 or condition.shape[1] != cond_channels or condition.shape[0] != b:
        raise ValueError(
            f"{name}: condition must have shape ({b}, {cond_channels}, H, W), got {tuple(condition.shape)}."
        )
    if condition.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"{name}: x {tuple(x.shape[2:])} and condition {tuple(condition.shape[2:])} differ in spatial size."
        )
    if h % stride or w % stride:
        raise ValueError(f"{name}: spatial size ({h}, {w}) must be divisible by {stride} (the total stride).")
    if not isinstance(timesteps, torch.Tensor):
        timesteps = torch.as_tensor(timesteps, device=x.device)
    if timesteps.ndim == 0:
        timesteps = timesteps.expand(b)
    if timesteps.shape != (b,):
        raise ValueError(f"{name}: timesteps must have shape ({b},), got {tuple(timesteps.shape)}.")
    return timesteps.to(x.device)
