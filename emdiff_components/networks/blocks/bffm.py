"""Blocks of BIEDSNet: boundary feature fusion module (BFFM) and attention-guided denoising residual block (ADRB)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...utils import check_positive_ints
from .attention import ChannelAttention, SpatialAttention

__all__ = ["boundary_edges", "BFFM", "CGR", "ADRB"]


def boundary_edges(features: torch.Tensor, kernel_sizes: Sequence[int] = (3, 5, 7)) -> list[torch.Tensor]:
    """Multi-granularity edge maps ``F_k = F - AvgPool_k(F)`` (BIEDSNet eq. 2).

    BIEDSNet (boundary-information-enhanced diffusion segmentation network), section III.B.

    Args:
        features: feature map ``(B, C, H, W)``.
        kernel_sizes: odd average-pooling sizes k (stride 1, padding k // 2, padded pixels excluded from the mean);
            default ``(3, 5, 7)``.

    Returns:
        one ``(B, C, H, W)`` edge map per kernel size, in order.
    """
    if features.ndim != 4:
        raise ValueError(f"boundary_edges: features must have shape (B, C, H, W), got {tuple(features.shape)}.")
    edges = []
    for k in kernel_sizes:
        if not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"boundary_edges: kernel_sizes must be positive odd ints, got {tuple(kernel_sizes)}.")
        # count_include_pad=False: the border mean is over real pixels only, so a flat map has zero edges everywhere
        edges.append(features - F.avg_pool2d(features, k, stride=1, padding=k // 2, count_include_pad=False))
    return edges


def _cbr(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()
    )


class BFFM(nn.Module):
    """Boundary feature fusion module: one level of the BIEDSNet conditional encoder.

    BIEDSNet section III.B, eqs. (1)-(4): ``F1 = CBR(CBR(x))``; ``F_k = F1 - AvgPool_k(F1)`` for k = 3, 5, 7;
    ``E = cat(F1, F3, F5, F7)``; ``E <- E * sigmoid(conv(relu(conv(avgpool(E)))))`` (squeeze-excitation channel
    attention, average pooling only, as in eq. 4); a depthwise-separable convolution (depthwise 3x3 + pointwise 1x1)
    maps the ``4 * out_channels`` channels to ``out_channels``.

    Args:
        in_channels: channels of the input (the image at level 0, the previous BFFM's output after).
        out_channels: level width.
        reduction: channel-attention ratio; hidden width ``max(1, 4 * out_channels // reduction)``; default 16.
        kernel_sizes: edge pooling sizes; default ``(3, 5, 7)``.

    Returns:
        ``forward(x)`` maps ``(B, in_channels, H, W)`` to ``(B, out_channels, H, W)``.

    Example:
        >>> BFFM(1, 8)(torch.ones(2, 1, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(
        self, in_channels: int, out_channels: int, reduction: int = 16, kernel_sizes: Sequence[int] = (3, 5, 7)
    ) -> None:
        super().__init__()
        check_positive_ints("BFFM", in_channels=in_channels, out_channels=out_channels, reduction=reduction)
        self.kernel_sizes = tuple(kernel_sizes)
        if not self.kernel_sizes or any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"BFFM: kernel_sizes must be non-empty positive odd ints, got {kernel_sizes!r}.")
        cat_channels = out_channels * (1 + len(self.kernel_sizes))
        hidden = max(1, cat_channels // reduction)
        self.features = nn.Sequential(_cbr(in_channels, out_channels), _cbr(out_channels, out_channels))
        self.channel_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(cat_channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, cat_channels, 1),
            nn.Sigmoid(),
        )
        self.depthwise = nn.Conv2d(cat_channels, cat_channels, 3, padding=1, groups=cat_channels)
        self.pointwise = nn.Conv2d(cat_channels, out_channels, 1)

    def edge_features(self, f1: torch.Tensor) -> torch.Tensor:
        """``cat(F1, F1 - AvgPool_3(F1), F1 - AvgPool_5(F1), F1 - AvgPool_7(F1))`` (eqs. 2-3)."""
        return torch.cat([f1, *boundary_edges(f1, self.kernel_sizes)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fuse boundary features of ``x``."""
        e = self.edge_features(self.features(x))
        e = e * self.channel_attention(e)
        return self.pointwise(self.depthwise(e))


class CGR(nn.Sequential):
    """Convolution 3x3, GroupNorm, ReLU (the CGR unit of the BIEDSNet ADRB, eq. 5).

    Args:
        in_channels: input channels.
        out_channels: output channels (divisible by ``norm_num_groups``).
        norm_num_groups: GroupNorm groups; default 8.

    Returns:
        ``forward(x)`` maps ``(B, in_channels, H, W)`` to ``(B, out_channels, H, W)``.

    Example:
        >>> CGR(4, 8)(torch.ones(1, 4, 5, 5)).shape
        torch.Size([1, 8, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, norm_num_groups: int = 8) -> None:
        check_positive_ints("CGR", in_channels=in_channels, out_channels=out_channels, norm_num_groups=norm_num_groups)
        if out_channels % norm_num_groups:
            raise ValueError(
                f"CGR: out_channels ({out_channels}) must be divisible by norm_num_groups ({norm_num_groups})."
            )
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.GroupNorm(norm_num_groups, out_channels),
            nn.ReLU(),
        )


class ADRB(nn.Module):
    """Attention-guided denoising residual block of BIEDSNet.

    BIEDSNet section III.C, eq. (5), read literally with three separate CGR units:
    ``R = CGR_a(x) + CGR_b(RL(emb) + CGR_c(x))`` with ``RL(emb) = Linear(ReLU(emb))`` broadcast over space; then
    CBAM attention ``R <- R * CA(R)``, ``R <- R * SA(R)``; the block returns ``skip(x) + R``, where ``skip`` is the
    identity, or a 1x1 convolution when ``in_channels != out_channels``. Eq. (5) names its sum the *residual*
    features and the text credits the block with alleviating vanishing gradients, hence the identity path (no public
    code exists to confirm it). The paper writes batch norm; GroupNorm is used, as in the reference design.

    Args:
        in_channels: input channels.
        out_channels: output channels (divisible by ``norm_num_groups``).
        embedding_channels: width of the time-step embedding.
        norm_num_groups: GroupNorm groups; default 8.
        reduction: channel-attention reduction; default 16.
        spatial_kernel_size: spatial-attention kernel; default 7.

    Returns:
        ``forward(x, emb)`` maps ``(B, in_channels, H, W)`` and ``(B, embedding_channels)`` to
        ``(B, out_channels, H, W)``.

    Example:
        >>> ADRB(8, 16, 32)(torch.ones(2, 8, 8, 8), torch.ones(2, 32)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embedding_channels: int,
        norm_num_groups: int = 8,
        reduction: int = 16,
        spatial_kernel_size: int = 7,
    ) -> None:
        super().__init__()
        check_positive_ints(
            "ADRB", in_channels=in_channels, out_channels=out_channels, embedding_channels=embedding_channels
        )
        self.direct = CGR(in_channels, out_channels, norm_num_groups)  # CGR_a
        self.pre_time = CGR(in_channels, out_channels, norm_num_groups)  # CGR_c
        self.post_time = CGR(out_channels, out_channels, norm_num_groups)  # CGR_b
        self.time_proj = nn.Sequential(nn.ReLU(), nn.Linear(embedding_channels, out_channels))  # RL
        self.channel_attention = ChannelAttention(out_channels, reduction)
        self.spatial_attention = SpatialAttention(spatial_kernel_size)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` with time embedding ``emb``."""
        t = self.time_proj(emb)[:, :, None, None]
        r = self.direct(x) + self.post_time(t + self.pre_time(x))
        r = r * self.channel_attention(r)
        r = r * self.spatial_attention(r)
        return self.skip(x) + r
