"""Blocks of the published Cold SegDiffusion ResUNet (the base of ECSD): time features, self-attention, CEM, MID block.

Yan et al. "Cold SegDiffusion: A Novel Diffusion Model for Medical Image Segmentation", Knowledge-Based Systems 2024;
Qi et al. "A Boundary-aware Cold-Diffusion Model for Electron Microscopy Segmentation" (ECSD). Each block computes
what the public reference code computes (checked against its weights and outputs in
``tests/networks/test_ecsd_reference.py``); the layouts of the tensors differ only where that makes the computation
cheaper, and ``emdiff_components.networks.reference_weights`` maps the reference's tensors onto them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...utils import check_positive_ints
from ._memory import add_, maybe_checkpoint, scale_
from .attention import (
    ChannelAttention,
    SoftmaxCrossAttention,
    SpatialAttention,
    from_heads,
    linear_attention,
    to_heads,
)
from .frequency import FFParserFilter
from .normalization import ChannelLayerNorm
from .resnet import TimeResBlock

__all__ = [
    "SinusoidalTimeEmbedding",
    "LinearSelfAttention",
    "SoftmaxSelfAttention",
    "ContrastEnhancementBlock",
    "MIDBottleneck",
]


class SinusoidalTimeEmbedding(nn.Module):
    """Sinusoidal time features ``[sin(t f_i) | cos(t f_i)]`` followed by Linear, GELU, Linear.

    Vaswani et al. "Attention Is All You Need", https://arxiv.org/abs/1706.03762 (sinusoids), in the form of
    Cold SegDiffusion (Yan et al., KBS 2024): with ``half = channels // 2`` the frequencies are
    ``f_i = exp(-ln(10000) * i / (half - 1))`` for ``i = 0 .. half - 1`` (so the last one is exactly 1 / 10000), sines
    first. MONAI's ``get_timestep_embedding`` divides by ``half`` instead and puts the cosines first.

    Args:
        channels: number of sinusoidal features, even and >= 4.
        embedding_channels: output width; ``None`` (default) gives ``4 * channels``.

    Returns:
        ``forward(timesteps)`` maps ``(B,)`` integer or float time steps to ``(B, embedding_channels)``.

    Example:
        >>> SinusoidalTimeEmbedding(16)(torch.tensor([3, 41])).shape
        torch.Size([2, 64])
    """

    def __init__(self, channels: int, embedding_channels: int | None = None) -> None:
        super().__init__()
        check_positive_ints("SinusoidalTimeEmbedding", channels=channels)
        if channels % 2 or channels < 4:
            raise ValueError(f"SinusoidalTimeEmbedding: channels must be even and >= 4, got {channels!r}.")
        embedding_channels = 4 * channels if embedding_channels is None else embedding_channels
        check_positive_ints("SinusoidalTimeEmbedding", embedding_channels=embedding_channels)
        self.channels, self.embedding_channels = channels, embedding_channels
        self.mlp = nn.Sequential(
            nn.Linear(channels, embedding_channels), nn.GELU(), nn.Linear(embedding_channels, embedding_channels)
        )

    def features(self, timesteps: torch.Tensor) -> torch.Tensor:
        """The ``(B, channels)`` sinusoidal features of ``(B,)`` time steps (float32 or wider)."""
        half = self.channels // 2
        dtype = torch.promote_types(self.mlp[0].weight.dtype, torch.float32)
        freqs = torch.exp(torch.arange(half, device=timesteps.device, dtype=dtype) * (-math.log(10000) / (half - 1)))
        args = timesteps.to(dtype)[:, None] * freqs[None, :]
        return torch.cat([args.sin(), args.cos()], dim=-1)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Embed ``(B,)`` time steps into ``(B, embedding_channels)``."""
        if timesteps.ndim != 1:
            raise ValueError(f"SinusoidalTimeEmbedding: timesteps must have shape (B,), got {tuple(timesteps.shape)}.")
        return self.mlp(self.features(timesteps).to(self.mlp[0].weight.dtype))


class LinearSelfAttention(nn.Module):
    """Pre-norm linear (efficient) self-attention with a LayerNormed output, optionally with CBAM-refined q and k.

    Shen et al. "Efficient Attention: Attention with Linear Complexities", https://arxiv.org/abs/1812.01243, in the
    form of Cold SegDiffusion (Yan et al., KBS 2024): ``x -> LN(x) -> q, k, v`` (one bias-free 1x1 convolution
    ``to_qkv``, q first), per head ``softmax_d(q) d^-1/2 @ (softmax_N(k)^T @ v)``, then a 1x1 convolution and a
    gain-only LayerNorm. With ``cbam=True`` (the CEM's attention) ``q <- CA(q) * q + q`` and ``k <- SA(k) * k + k``
    before the softmaxes (Woo et al. "CBAM", https://arxiv.org/abs/1807.06521). The residual, where there is one,
    is the caller's. Cost and memory are O(N d^2): the (N, N) matrix never exists.

    Args:
        channels: channels of the input and the output (positive int).
        heads: attention heads; default 4.
        head_channels: channels per head d; default 32.
        cbam: refine q with channel attention and k with spatial attention; default False.
        reduction: reduction ratio of the channel-attention MLP; default 16.

    Returns:
        ``forward(x)`` maps ``(B, channels, H, W)`` to ``(B, channels, H, W)``.

    Example:
        >>> LinearSelfAttention(16, heads=2, head_channels=8)(torch.ones(1, 16, 12, 10)).shape
        torch.Size([1, 16, 12, 10])
    """

    def __init__(
        self, channels: int, heads: int = 4, head_channels: int = 32, cbam: bool = False, reduction: int = 16
    ) -> None:
        super().__init__()
        check_positive_ints("LinearSelfAttention", channels=channels, heads=heads, head_channels=head_channels)
        hidden = heads * head_channels
        self.heads, self.head_channels = heads, head_channels
        self.norm = ChannelLayerNorm(channels, bias=False)
        self.to_qkv = nn.Conv2d(channels, 3 * hidden, 1, bias=False)
        self.channel_attention = ChannelAttention(hidden, reduction) if cbam else None
        self.spatial_attention = SpatialAttention(7, bias=True) if cbam else None
        self.to_out = nn.Conv2d(hidden, channels, 1)
        self.out_norm = ChannelLayerNorm(channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the positions of ``x``."""
        hidden = self.heads * self.head_channels
        x = self.norm(x)
        # q, k and v each by its own slice of the projection: three contiguous maps (exp() on a contiguous map is
        # several times faster than on a strided chunk)
        q, k, v = (F.conv2d(x, w) for w in self.to_qkv.weight.split(hidden, dim=0))
        if self.channel_attention is not None:
            q = scale_(q, 1 + self.channel_attention(q))  # CA(q) * q + q in one pass
        if self.spatial_attention is not None:
            k = scale_(k, 1 + self.spatial_attention(k))
        return self.out_norm(linear_attention(q, k, v, self.heads, self.head_channels, self.to_out))


class SoftmaxSelfAttention(nn.Module):
    """Pre-norm multi-head softmax self-attention (Vaswani et al., https://arxiv.org/abs/1706.03762).

    The deepest level's attention of Cold SegDiffusion (Yan et al., KBS 2024): ``LN(x)`` (gain only), q, k, v from
    one bias-free 1x1 convolution ``to_qkv`` (q first), ``softmax(q k^T / sqrt(d)) v``, 1x1 output convolution; the
    caller adds the residual. Computed with ``scaled_dot_product_attention`` (O(N^2) per head).

    Args:
        channels: channels of the input and the output (positive int).
        heads: attention heads; default 4.
        head_channels: channels per head; default 32.

    Returns:
        ``forward(x)`` maps ``(B, channels, H, W)`` to ``(B, channels, H, W)``.

    Example:
        >>> SoftmaxSelfAttention(16, heads=2, head_channels=8)(torch.ones(1, 16, 4, 6)).shape
        torch.Size([1, 16, 4, 6])
    """

    def __init__(self, channels: int, heads: int = 4, head_channels: int = 32) -> None:
        super().__init__()
        check_positive_ints("SoftmaxSelfAttention", channels=channels, heads=heads, head_channels=head_channels)
        hidden = heads * head_channels
        self.heads, self.head_channels = heads, head_channels
        self.norm = ChannelLayerNorm(channels, bias=False)
        self.to_qkv = nn.Conv2d(channels, 3 * hidden, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the positions of ``x``."""
        h, w = x.shape[2:]
        q, k, v = (to_heads(t, self.heads).transpose(1, 2) for t in self.to_qkv(self.norm(x)).chunk(3, dim=1))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        return self.to_out(from_heads(out.transpose(1, 2), h, w))


class ContrastEnhancementBlock(nn.Module):
    """Contrast enhancement module (CEM) of Cold SegDiffusion / ECSD, on the main-path features only.

    Yan et al. "Cold SegDiffusion" (KBS 2024), as inherited by Qi et al. (ECSD)::

        z = LayerNorm(FFParser(x))                 # LayerNorm with gain and bias
        a = LinearSelfAttention_cbam(z + x)        # q <- CA(q) q + q, k <- SA(k) k + k; no residual
        out = ResBlock(a)                          # no time input

    Args:
        channels: channels of the input and output (divisible by ``norm_num_groups``).
        norm_num_groups: GroupNorm groups of the ResBlock; default 8 (the reference's, fixed there).
        heads: attention heads; default 4.
        head_channels: channels per head; default 32.
        filter_size: ``(G_h, G_w)`` (or one int) of the FF-Parser maps, the reference's feature-map size here;
            inputs of any size are accepted (:class:`FFParserFilter`); default 64.
        use_checkpointing: while training with gradients on, recompute each stage (filter + norm, attention,
            ResBlock) in backward, sample by sample, instead of storing its activations; default False.

    Returns:
        ``forward(x)`` maps ``(B, channels, H, W)`` to ``(B, channels, H, W)``.

    Example:
        >>> cem = ContrastEnhancementBlock(16, heads=2, head_channels=8, filter_size=8)
        >>> cem(torch.ones(1, 16, 12, 20)).shape
        torch.Size([1, 16, 12, 20])
    """

    def __init__(
        self,
        channels: int,
        norm_num_groups: int = 8,
        heads: int = 4,
        head_channels: int = 32,
        filter_size: int | Sequence[int] = 64,
        use_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.use_checkpointing = bool(use_checkpointing)
        self.fourier_filter = FFParserFilter(channels, filter_size)
        self.norm = ChannelLayerNorm(channels, bias=True)
        self.attention = LinearSelfAttention(channels, heads, head_channels, cbam=True)
        self.block = TimeResBlock(2, channels, channels, None, norm_num_groups)

    def _enhance(self, x: torch.Tensor) -> torch.Tensor:
        return add_(self.norm(self.fourier_filter(x)), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Enhance the main-path features ``x``."""
        ckpt = self.use_checkpointing and self.training
        z = maybe_checkpoint(ckpt, self._enhance, x)
        z = maybe_checkpoint(ckpt, self.attention, z)
        return maybe_checkpoint(ckpt, self.block, z)


class _FeedForward(nn.Sequential):
    """Pre-norm (gain-only LayerNorm) position-wise MLP of 1x1 convolutions with GELU."""

    def __init__(self, channels: int, mult: int) -> None:
        super().__init__(
            ChannelLayerNorm(channels, bias=False),
            nn.Conv2d(channels, channels * mult, 1),
            nn.GELU(),
            nn.Conv2d(channels * mult, channels, 1),
        )


class _MIDLayer(nn.Module):
    def __init__(self, channels: int, heads: int, head_channels: int, ff_mult: int) -> None:
        super().__init__()
        self.attention1 = SoftmaxCrossAttention(channels, channels, heads, head_channels, norm_bias=False)
        self.ff1 = _FeedForward(channels, ff_mult)
        self.ff2 = _FeedForward(channels, ff_mult)
        self.attention2 = SoftmaxCrossAttention(channels, channels, heads, head_channels, norm_bias=False)


class MIDBottleneck(nn.Module):
    """Bottleneck of Cold SegDiffusion / ECSD: the only place where the image features join the main path.

    Yan et al. "Cold SegDiffusion" (KBS 2024) (the MID transformer; ECSD's CCAM). With x the main and c the
    conditional-encoder bottleneck features and ``A(q_from, kv_from)`` a pre-norm softmax cross-attention
    (gain-only LayerNorms)::

        c = cond_mid1(c, temb);  x = mid1(x, temb) + c        # ResBlocks
        for each layer:
            x = x + A(c, x)                                   # queries from c, keys / values from x
            x1 = x + FF1(x);  x2 = x + FF2(x)                 # 4x feed-forward branches
            x = x1 + A(x2, x1)                                # queries from x2, keys / values from x1
        out = mid2(x, temb)

    Args:
        channels: channels of x and c (divisible by ``norm_num_groups``).
        temb_channels: width of the time embedding.
        norm_num_groups: GroupNorm groups of the ResBlocks; default 8.
        heads: attention heads; default 4.
        head_channels: channels per head; default 32.
        ff_mult: hidden width factor of the feed-forward branches; default 4 (the reference's).
        depth: number of transformer layers; default 1.
        use_checkpointing: while training with gradients on, recompute every ResBlock, attention and feed-forward
            branch in backward instead of storing its activations; default False.

    Returns:
        ``forward(x, c, temb)`` maps two ``(B, channels, h, w)`` maps and ``(B, temb_channels)`` to
        ``(B, channels, h, w)``.

    Example:
        >>> mid = MIDBottleneck(16, temb_channels=32, heads=2, head_channels=8)
        >>> mid(torch.ones(1, 16, 4, 6), torch.ones(1, 16, 4, 6), torch.ones(1, 32)).shape
        torch.Size([1, 16, 4, 6])
    """

    def __init__(
        self,
        channels: int,
        temb_channels: int,
        norm_num_groups: int = 8,
        heads: int = 4,
        head_channels: int = 32,
        ff_mult: int = 4,
        depth: int = 1,
        use_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        check_positive_ints("MIDBottleneck", ff_mult=ff_mult, depth=depth)
        self.use_checkpointing = bool(use_checkpointing)
        self.mid1 = TimeResBlock(2, channels, channels, temb_channels, norm_num_groups)
        self.cond_mid1 = TimeResBlock(2, channels, channels, temb_channels, norm_num_groups)
        self.layers = nn.ModuleList(_MIDLayer(channels, heads, head_channels, ff_mult) for _ in range(depth))
        self.mid2 = TimeResBlock(2, channels, channels, temb_channels, norm_num_groups)

    def forward(self, x: torch.Tensor, c: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Fuse the conditional bottleneck ``c`` into ``x``."""
        if x.shape != c.shape:
            raise ValueError(f"MIDBottleneck: x {tuple(x.shape)} and c {tuple(c.shape)} must have the same shape.")
        ckpt = self.use_checkpointing and self.training
        c = maybe_checkpoint(ckpt, self.cond_mid1, c, temb)
        x = add_(maybe_checkpoint(ckpt, self.mid1, x, temb), c)
        for layer in self.layers:
            x = add_(maybe_checkpoint(ckpt, layer.attention1, c, x), x)
            x1 = add_(maybe_checkpoint(ckpt, layer.ff1, x), x)
            x2 = add_(maybe_checkpoint(ckpt, layer.ff2, x), x)
            x = add_(maybe_checkpoint(ckpt, layer.attention2, x2, x1), x1)
        return maybe_checkpoint(ckpt, self.mid2, x, temb)
