"""ResNet block with GroupNorm and a time-embedding scale-shift (the building block of the ECSD ResUNet)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from ._memory import add_, scale_shift_, silu_

__all__ = ["TimeResBlock"]


class TimeResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU, a residual path, and a time-embedding scale-shift.

    He et al. "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385; the time-conditioned
    layout (conv, GroupNorm, ``h * (1 + scale) + shift``, SiLU) is the one of Ho et al. "Denoising Diffusion
    Probabilistic Models", https://arxiv.org/abs/2006.11239, as used by med-seg-diff / Cold SegDiffusion.

    Args:
        spatial_dims: number of spatial dimensions (1, 2 or 3); default 2.
        in_channels: input channels (positive int).
        out_channels: output channels (positive int, divisible by ``norm_num_groups``).
        temb_channels: width of the time embedding; ``None`` (default) for a block without time conditioning.
        norm_num_groups: groups of both GroupNorms; default 8.

    Returns:
        ``forward(x, temb)`` maps ``(B, in_channels, H, W)`` and ``(B, temb_channels)`` to ``(B, out_channels, H, W)``.

    Example:
        >>> block = TimeResBlock(2, 16, 32, temb_channels=64)
        >>> block(torch.ones(2, 16, 8, 8), torch.ones(2, 64)).shape
        torch.Size([2, 32, 8, 8])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 8,
        temb_channels: int | None = None,
        norm_num_groups: int = 8,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TimeResBlock: {name} must be a positive int, got {value!r}.")
        if not isinstance(norm_num_groups, int) or norm_num_groups < 1 or out_channels % norm_num_groups != 0:
            raise ValueError(
                f"TimeResBlock: out_channels ({out_channels}) must be divisible by norm_num_groups ({norm_num_groups})."
            )
        self.conv1 = Convolution(spatial_dims, in_channels, out_channels, kernel_size=3, conv_only=True)
        self.norm1 = nn.GroupNorm(norm_num_groups, out_channels)
        self.conv2 = Convolution(spatial_dims, out_channels, out_channels, kernel_size=3, conv_only=True)
        self.norm2 = nn.GroupNorm(norm_num_groups, out_channels)
        self.time_proj = None if temb_channels is None else nn.Linear(temb_channels, 2 * out_channels)
        self.skip: nn.Module
        if in_channels == out_channels:
            self.skip = nn.Identity()
        else:
            self.skip = Convolution(spatial_dims, in_channels, out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block; ``temb`` is required when the block was built with ``temb_channels``."""
        view = (x.shape[0], -1, *([1] * (x.ndim - 2)))
        # GroupNorm affine and time scale-shift folded into one per-(sample, channel) affine map:
        # (n * w + b) * (1 + s) + t = n * (w * (1 + s)) + (b * (1 + s) + t)
        scale, shift = self.norm1.weight.expand(x.shape[0], -1), self.norm1.bias.expand(x.shape[0], -1)
        if self.time_proj is not None:
            if temb is None:
                raise ValueError("TimeResBlock: this block was built with temb_channels, so temb is required.")
            s, t = self.time_proj(F.silu(temb)).chunk(2, dim=1)
            scale, shift = scale * (1 + s), shift * (1 + s) + t
        h = F.group_norm(self.conv1(x), self.norm1.num_groups, eps=self.norm1.eps)
        h = silu_(scale_shift_(h, scale.reshape(view), shift.reshape(view)))
        h = self.norm2(self.conv2(h))
        return add_(silu_(h), self.skip(x))
