"""NeuroDiff's multi-scale conditioning (MSC): one condition embedding, a zero-initialised hint per U-Net level."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .resampling import trilinear_upsample

__all__ = ["MSC"]


def _ratio(owner: str, name: str, value: Sequence[int]) -> tuple[int, int, int]:
    ratio = tuple(value)
    if len(ratio) != 3 or any(not isinstance(r, int) or isinstance(r, bool) or r < 1 for r in ratio):
        raise ValueError(f"{owner}: {name} must be three positive ints (z, y, x), got {value!r}.")
    return ratio  # type: ignore[return-value]


class _Hint(nn.Module):
    """SiLU, resampling from the embedding grid to a level's grid, zero-initialised 3x3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int, source: tuple[int, ...], target: tuple[int, ...]) -> None:
        super().__init__()
        # finer level: trilinear up-sampling by source / target; coarser level: conv stride target / source
        self.scale = tuple(s // t if s > t else 1 for s, t in zip(source, target))
        stride = tuple(t // s if t > s else 1 for s, t in zip(source, target))
        self.conv = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1)
        # zero init (ControlNet-style): the hint adds exactly nothing until training moves it
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        h = F.silu(embedding)
        if self.scale != (1, 1, 1):
            h = trilinear_upsample(h, self.scale)
        return self.conv(h)


class MSC(nn.Module):
    """Multi-scale conditioning: a convolutional condition embedding and one zero-initialised hint per U-Net level.

    NeuroDiff (Liu et al., "Diffusion-based data augmentation for neuron segmentation"), section 2.1: the condition
    ``c`` (B, 2, D, H, W) goes through 3x3x3 convolutions ``2 -> 32 -> 64 -> 128 -> 256`` with SiLU between them,
    the last three with stride (1, 2, 2), to ``c_embed`` (B, 256, D, H/8, W/8). For U-Net level i the hint is
    ``SiLU -> resample -> zero-initialised 3x3x3 conv`` to the level's width, added as ``f_i <- f_i + c_i``. As in the
    reference code (``make_dense_hint_block``), a level finer than the embedding is reached by trilinear up-sampling
    (before the convolution) and a coarser one by the convolution's stride.

    Args:
        hint_channels: width of every hint (one entry per U-Net level that receives a hint).
        hint_ratios: down-sampling factor ``(z, y, x)`` of each hint's level relative to the input (same length).
        in_channels: condition channels; default 2 (membrane, mitochondria).
        embed_channels: widths of the embedding convolutions; default ``(32, 64, 128, 256)``.
        embed_stride: stride of every embedding convolution after the first; default ``(1, 2, 2)`` (so the
            embedding is at ``embed_stride ** (len(embed_channels) - 1)`` = (1, 8, 8)).

    Returns:
        ``embed(condition)`` maps ``(B, in_channels, D, H, W)`` to the embedding ``(B, embed_channels[-1], D / sz,
        H / sy, W / sx)``; ``hint(i, embedding)`` gives level i's hint ``(B, hint_channels[i], D / rz, H / ry,
        W / rx)`` for ``hint_ratios[i] = (rz, ry, rx)``; ``forward(condition)`` returns the list of all hints.

    Example:
        >>> msc = MSC(hint_channels=(8, 16), hint_ratios=((1, 1, 1), (1, 16, 16)))
        >>> [h.shape for h in msc(torch.zeros(1, 2, 2, 32, 32))]
        [torch.Size([1, 8, 2, 32, 32]), torch.Size([1, 16, 2, 2, 2])]
    """

    def __init__(
        self,
        hint_channels: Sequence[int],
        hint_ratios: Sequence[Sequence[int]],
        in_channels: int = 2,
        embed_channels: Sequence[int] = (32, 64, 128, 256),
        embed_stride: Sequence[int] = (1, 2, 2),
    ) -> None:
        super().__init__()
        hint_channels, embed_channels = tuple(hint_channels), tuple(embed_channels)
        for name, values in (("hint_channels", hint_channels), ("embed_channels", embed_channels)):
            if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
                raise ValueError(f"MSC: {name} must be a non-empty sequence of positive ints, got {values!r}.")
        if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
            raise ValueError(f"MSC: in_channels must be a positive int, got {in_channels!r}.")
        if len(hint_ratios) != len(hint_channels):
            raise ValueError(
                f"MSC: hint_ratios ({len(hint_ratios)} entries) and hint_channels ({len(hint_channels)}) differ."
            )
        ratios = [_ratio("MSC", "hint_ratios", r) for r in hint_ratios]
        stride = _ratio("MSC", "embed_stride", embed_stride)
        n_strided = len(embed_channels) - 1
        self.in_channels = in_channels
        self.embed_ratio = tuple(s**n_strided for s in stride)
        for r in ratios:
            for s, t in zip(self.embed_ratio, r):
                if (s > t and s % t) or (t > s and t % s):
                    raise ValueError(f"MSC: hint ratio {r} and embedding ratio {self.embed_ratio} are not multiples.")
        layers: list[nn.Module] = [nn.Conv3d(in_channels, embed_channels[0], 3, padding=1)]
        for c_in, c_out in zip(embed_channels[:-1], embed_channels[1:]):
            layers += [nn.SiLU(), nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1)]
        self.encoder = nn.Sequential(*layers)
        self.hints = nn.ModuleList(
            [_Hint(embed_channels[-1], c, self.embed_ratio, r) for c, r in zip(hint_channels, ratios)]
        )

    def embed(self, condition: torch.Tensor) -> torch.Tensor:
        """Condition embedding ``(B, embed_channels[-1], D / sz, H / sy, W / sx)``."""
        if condition.ndim != 5 or condition.shape[1] != self.in_channels:
            raise ValueError(
                f"MSC: condition must have shape (B, {self.in_channels}, D, H, W), got {tuple(condition.shape)}."
            )
        if any(n % r for n, r in zip(condition.shape[2:], self.embed_ratio)):
            raise ValueError(
                f"MSC: condition size {tuple(condition.shape[2:])} must be divisible by {self.embed_ratio}."
            )
        return self.encoder(condition)

    def hint(self, index: int, embedding: torch.Tensor) -> torch.Tensor:
        """Hint of level ``index`` from the embedding."""
        return self.hints[index](embedding)

    def forward(self, condition: torch.Tensor) -> list[torch.Tensor]:
        """All hints, one per level, from the condition ``(B, in_channels, D, H, W)``."""
        embedding = self.embed(condition)
        return [hint(embedding) for hint in self.hints]
