"""Attention blocks of the ECSD network: CBAM channel / spatial attention, linear attention, softmax cross-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from ...utils import check_positive_ints
from ._memory import exp_, sub_
from .normalization import ChannelLayerNorm

__all__ = [
    "ChannelAttention",
    "SpatialAttention",
    "SoftmaxCrossAttention",
    "to_heads",
    "from_heads",
    "linear_attention",
]


def to_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, heads * d, H, W) -> (B, H * W, heads, d)."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, heads, c // heads)


def from_heads(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, H * W, heads, d) -> (B, heads * d, H, W) in channels-last memory format."""
    return x.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)


def linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, d: int, to_out: nn.Conv2d
) -> torch.Tensor:
    """Efficient attention of (B, heads * d, H, W) maps q, k, v followed by the 1x1 projection ``to_out``.

    Per head: ``out = softmax_d(q) @ (softmax_N(k)^T @ v) * d ** -0.5`` (Shen et al.), then ``to_out``; returns
    (B, C_out, H, W) in channels-last memory format. ``k`` is overwritten when no graph is recorded.
    """
    b, _, h, w = q.shape
    # token-major (B, N, heads * d): views, not copies, of channels-last maps
    q, k, v = (t.permute(0, 2, 3, 1).reshape(b, h * w, heads * d) for t in (q, k, v))
    q = q.unflatten(-1, (heads, d)).softmax(dim=-1).flatten(-2)  # over each head's d features
    # softmax over the N tokens with its normaliser moved onto the small context, so that only exp(k - max)
    # exists at full resolution. The max only keeps exp() finite and cancels between numerator and normaliser, so it
    # is detached: no gradient flows through it, and autograd skips amax's backward (a full-size mask)
    k = exp_(sub_(k, k.amax(dim=1, keepdim=True).detach()))
    normaliser = k.sum(dim=1).view(b, heads, d, 1)
    ctx = torch.stack(
        [  # unbind, not k[i]: its backward is one stack, where each k[i] would zero-fill a full-size gradient
            torch.bmm(ki.view(-1, heads, d).permute(1, 2, 0), vi.view(-1, heads, d).transpose(0, 1))
            for ki, vi in zip(k.unbind(0), v.unbind(0))
        ]
    )  # (B, heads, d, d): per head, the sum over tokens of exp(k - max) v^T
    ctx = ctx / normaliser * d**-0.5
    # the 1x1 output projection is folded into the context, so the (N, heads * d) attention output is never
    # materialised: out = q @ (blockdiag(ctx) @ W_out^T) + b_out
    weight = to_out.weight.reshape(-1, heads, d)  # (channels, heads, d)
    folded = torch.einsum("bhde,che->bhdc", ctx, weight).reshape(b, heads * d, -1)
    out = torch.baddbmm(to_out.bias.view(1, 1, -1), q, folded)  # (B, N, channels)
    return out.view(b, h, w, -1).permute(0, 3, 1, 2)


class ChannelAttention(nn.Module):
    """CBAM channel attention: ``sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` with one shared MLP.

    Woo et al. "CBAM: Convolutional Block Attention Module", https://arxiv.org/abs/1807.06521.

    Args:
        channels: number of channels C (positive int).
        reduction: hidden width of the MLP is ``max(1, C // reduction)``; default 16.

    Returns:
        ``forward(x)`` maps ``(B, C, H, W)`` to the attention weights ``(B, C, 1, 1)`` in (0, 1).

    Example:
        >>> ChannelAttention(32)(torch.ones(2, 32, 8, 8)).shape
        torch.Size([2, 32, 1, 1])
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        check_positive_ints("ChannelAttention", channels=channels, reduction=reduction)
        hidden = max(1, channels // reduction)
        # 1x1 convolutions on the pooled (B, C, 1, 1) maps are the shared MLP of CBAM.
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(), nn.Conv2d(hidden, channels, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the channel weights of ``x``."""
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))


class SpatialAttention(nn.Module):
    """CBAM spatial attention: ``sigmoid(conv7x7([mean_c(x), max_c(x)]))``.

    Woo et al. "CBAM: Convolutional Block Attention Module", https://arxiv.org/abs/1807.06521.

    Args:
        kernel_size: odd size of the convolution over the two pooled maps; default 7.
        bias: give the convolution a bias (CBAM's and Cold SegDiffusion's CEM have one); default False.

    Returns:
        ``forward(x)`` maps ``(B, C, H, W)`` to the attention weights ``(B, 1, H, W)`` in (0, 1).

    Example:
        >>> SpatialAttention()(torch.ones(2, 32, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, kernel_size: int = 7, bias: bool = False) -> None:
        super().__init__()
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SpatialAttention: kernel_size must be a positive odd int, got {kernel_size!r}.")
        self.conv = Convolution(2, 2, 1, kernel_size=kernel_size, bias=bias, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the spatial weights of ``x``."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class SoftmaxCrossAttention(nn.Module):
    """Multi-head softmax (scaled dot-product) cross-attention between two feature maps of the same size.

    Vaswani et al. "Attention Is All You Need", https://arxiv.org/abs/1706.03762; computed with
    ``torch.nn.functional.scaled_dot_product_attention``. Memory is O(N^2) per head, so ECSD uses it only at the
    bottleneck (CCAM), where N = H * W / 64.

    Args:
        channels: channels of the query map ``x`` (and of the output).
        context_channels: channels of the key / value map; ``None`` (default) means ``channels``.
        heads: number of heads; default 4.
        head_channels: channels per head; default 32.
        norm_bias: the two pre-norm LayerNorms learn a bias as well as a gain; default True (Cold SegDiffusion's
            MID attention has gains only).

    Returns:
        ``forward(x, context)`` maps ``(B, channels, H, W)`` and ``(B, context_channels, H, W)`` to
        ``(B, channels, H, W)``; the caller adds the residual.

    Example:
        >>> attn = SoftmaxCrossAttention(16, heads=2, head_channels=8)
        >>> attn(torch.ones(1, 16, 4, 6), torch.ones(1, 16, 4, 6)).shape
        torch.Size([1, 16, 4, 6])
    """

    def __init__(
        self,
        channels: int,
        context_channels: int | None = None,
        heads: int = 4,
        head_channels: int = 32,
        norm_bias: bool = True,
    ) -> None:
        super().__init__()
        context_channels = channels if context_channels is None else context_channels
        check_positive_ints(
            "SoftmaxCrossAttention",
            channels=channels,
            context_channels=context_channels,
            heads=heads,
            head_channels=head_channels,
        )
        hidden = heads * head_channels
        self.heads, self.head_channels = heads, head_channels
        self.norm_q = ChannelLayerNorm(channels, bias=norm_bias)
        self.norm_kv = ChannelLayerNorm(context_channels, bias=norm_bias)
        self.to_q = nn.Conv2d(channels, hidden, 1, bias=False)
        self.to_kv = nn.Conv2d(context_channels, 2 * hidden, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from the positions of ``x`` to those of ``context``."""
        context = x if context is None else context
        if context.shape[0] != x.shape[0]:
            raise ValueError(
                f"SoftmaxCrossAttention: x {tuple(x.shape)} and context {tuple(context.shape)} differ in batch size."
            )
        b, _, h, w = x.shape
        q = to_heads(self.to_q(self.norm_q(x)), self.heads).transpose(1, 2)
        k, v = self.to_kv(self.norm_kv(context)).chunk(2, dim=1)
        k, v = (to_heads(t, self.heads).transpose(1, 2) for t in (k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        return self.to_out(from_heads(out.transpose(1, 2), h, w))
