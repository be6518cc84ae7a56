"""The two conditioning modules of the ECSD ResUNet: CEM (every encoder level) and CCAM (bottleneck)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._memory import add_, maybe_checkpoint
from .attention import LinearCrossAttention, SoftmaxCrossAttention
from .frequency import LearnableFourierFilter
from .normalization import ChannelLayerNorm
from .resnet import TimeResBlock

__all__ = ["ContrastEnhancementModule", "ConditionalCrossAttentionModule"]


class ContrastEnhancementModule(nn.Module):
    """Contrast enhancement module (CEM): Fourier filter, LayerNorm, CBAM-refined linear cross-attention, ResBlock.

    Yan et al. "Cold SegDiffusion" (KBS 2024) and Qi et al. "A Boundary-aware Cold-Diffusion Model for Electron
    Microscopy Segmentation" (ECSD). With x the main-encoder features and c the conditional-encoder features of the
    same level::

        z = LayerNorm_C(LearnableFourierFilter(x)) + x
        z = z + LinearCrossAttention(queries from z, keys / values from c)   # q <- CA(q)q + q, k <- SA(k)k + k
        out = TimeResBlock(z, temb)

    The cross-attention is where the image condition enters each encoder level.

    Args:
        channels: channels of x and of the output (divisible by ``norm_num_groups``).
        context_channels: channels of c; ``None`` (default) means ``channels``.
        temb_channels: width of the time embedding given to the ResBlock; ``None`` for none.
        norm_num_groups: GroupNorm groups of the ResBlock; default 8.
        heads: attention heads; default 4.
        head_channels: channels per head; default 32.
        filter_grid: frequency grid of the Fourier filter maps; default ``(64, 64)``.
        spatial_dims: must be 2 (the filter is 2D); default 2.
        use_checkpointing: while training with gradients on, recompute each of the three stages (filter + norm,
            attention, ResBlock) in backward, sample by sample, instead of storing their activations; default False.

    Returns:
        ``forward(x, c, temb)`` maps ``(B, channels, H, W)``, ``(B, context_channels, H, W)`` and
        ``(B, temb_channels)`` to ``(B, channels, H, W)``.

    Example:
        >>> cem = ContrastEnhancementModule(16, temb_channels=32, heads=2, head_channels=8, filter_grid=(8, 8))
        >>> cem(torch.ones(1, 16, 12, 20), torch.ones(1, 16, 12, 20), torch.ones(1, 32)).shape
        torch.Size([1, 16, 12, 20])
    """

    def __init__(
        self,
        channels: int,
        context_channels: int | None = None,
        temb_channels: int | None = None,
        norm_num_groups: int = 8,
        heads: int = 4,
        head_channels: int = 32,
        filter_grid: Sequence[int] = (64, 64),
        spatial_dims: int = 2,
        use_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"ContrastEnhancementModule: spatial_dims must be 2, got {spatial_dims!r}.")
        self.use_checkpointing = bool(use_checkpointing)
        self.fourier_filter = LearnableFourierFilter(channels, filter_grid)
        self.norm = ChannelLayerNorm(channels)
        self.attention = LinearCrossAttention(channels, context_channels, heads, head_channels)
        self.block = TimeResBlock(2, channels, channels, temb_channels, norm_num_groups)

    def forward(self, x: torch.Tensor, c: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse the condition features ``c`` into ``x``."""
        ckpt = self.use_checkpointing and self.training
        z = maybe_checkpoint(ckpt, self._enhance, x)
        z = maybe_checkpoint(ckpt, self._attend, z, c)
        return maybe_checkpoint(ckpt, self.block, z, temb)

    def _enhance(self, x: torch.Tensor) -> torch.Tensor:
        return add_(self.norm(self.fourier_filter(x)), x)

    def _attend(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return add_(self.attention(z, c), z)


class _FeedForward(nn.Sequential):
    """Pre-norm position-wise MLP (1x1 convolutions) with GELU."""

    def __init__(self, channels: int, mult: int = 2) -> None:
        super().__init__(
            ChannelLayerNorm(channels),
            nn.Conv2d(channels, channels * mult, 1),
            nn.GELU(),
            nn.Conv2d(channels * mult, channels, 1),
        )


class ConditionalCrossAttentionModule(nn.Module):
    """Conditional cross-attention module (CCAM) at the bottleneck of the ECSD ResUNet.

    Yan et al. "Cold SegDiffusion" (KBS 2024) and Qi et al. "A Boundary-aware Cold-Diffusion Model for Electron
    Microscopy Segmentation" (ECSD). With x the main and c the conditional bottleneck features::

        x = mid1(x, temb) + cond_mid1(c, temb)                  # ResBlocks
        x = x + Attn(queries from c, keys / values from x)      # softmax cross-attention
        x1 = x + FF1(x);  x2 = x + FF2(x)                       # two feed-forward branches
        x = x2 + Attn(queries from x2, keys / values from x1)
        out = mid2(x, temb)

    The attentions are full softmax attention (``scaled_dot_product_attention``), affordable because the bottleneck
    has H * W / 4**(levels - 1) tokens.

    Args:
        channels: channels of x and c (divisible by ``norm_num_groups``).
        temb_channels: width of the time embedding; ``None`` for none.
        norm_num_groups: GroupNorm groups of the ResBlocks; default 8.
        heads: attention heads; default 4.
        head_channels: channels per head; default 32.
        ff_mult: hidden width factor of the feed-forward branches; default 2.
        use_checkpointing: while training with gradients on, recompute every ResBlock, attention and feed-forward
            branch in backward instead of storing its activations; default False.

    Returns:
        ``forward(x, c, temb)`` maps two ``(B, channels, h, w)`` maps and ``(B, temb_channels)`` to
        ``(B, channels, h, w)``.

    Example:
        >>> ccam = ConditionalCrossAttentionModule(16, temb_channels=32, heads=2, head_channels=8)
        >>> ccam(torch.ones(1, 16, 4, 6), torch.ones(1, 16, 4, 6), torch.ones(1, 32)).shape
        torch.Size([1, 16, 4, 6])
    """

    def __init__(
        self,
        channels: int,
        temb_channels: int | None = None,
        norm_num_groups: int = 8,
        heads: int = 4,
        head_channels: int = 32,
        ff_mult: int = 2,
        use_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.use_checkpointing = bool(use_checkpointing)
        if not isinstance(ff_mult, int) or ff_mult < 1:
            raise ValueError(f"ConditionalCrossAttentionModule: ff_mult must be a positive int, got {ff_mult!r}.")
        self.mid1 = TimeResBlock(2, channels, channels, temb_channels, norm_num_groups)
        self.cond_mid1 = TimeResBlock(2, channels, channels, temb_channels, norm_num_groups)
        self.cross_attention = SoftmaxCrossAttention(channels, channels, heads, head_channels)
        self.ff1 = _FeedForward(channels, ff_mult)
        self.ff2 = _FeedForward(channels, ff_mult)
        self.branch_attention = SoftmaxCrossAttention(channels, channels, heads, head_channels)
        self.mid2 = TimeResBlock(2, channels, channels, temb_channels, norm_num_groups)

    def forward(self, x: torch.Tensor, c: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse the conditional bottleneck ``c`` into ``x``."""
        if x.shape != c.shape:
            raise ValueError(
                f"ConditionalCrossAttentionModule: x {tuple(x.shape)} and c {tuple(c.shape)} must have the same shape."
            )
        ckpt = self.use_checkpointing and self.training
        x = add_(maybe_checkpoint(ckpt, self.mid1, x, temb), maybe_checkpoint(ckpt, self.cond_mid1, c, temb))
        x = add_(maybe_checkpoint(ckpt, self.cross_attention, c, x), x)
        x1 = add_(maybe_checkpoint(ckpt, self.ff1, x), x)
        x2 = add_(maybe_checkpoint(ckpt, self.ff2, x), x)
        x = add_(maybe_checkpoint(ckpt, self.branch_attention, x2, x1), x2)
        return maybe_checkpoint(ckpt, self.mid2, x, temb)
