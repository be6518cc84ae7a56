"""Layer normalisation over the channel axis of channel-first feature maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelLayerNorm"]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, *spatial)`` tensor, independently at every position.

    Ba et al. "Layer Normalization", https://arxiv.org/abs/1607.06450; the channel-wise form is the one med-seg-diff
    and Cold SegDiffusion apply to convolutional feature maps. Implemented by moving the channel axis last and calling
    ``F.layer_norm`` (a view, no copy, for channels-last tensors).

    Args:
        channels: number of channels C (positive int).
        eps: added to the variance; default 1e-5.
        bias: learn an additive bias as well as the gain; default True.

    Returns:
        ``forward(x)`` returns a tensor of the input's shape ``(B, C, H, W)``.

    Example:
        >>> norm = ChannelLayerNorm(8)
        >>> norm(torch.arange(256.0).reshape(2, 8, 4, 4)).mean(dim=1).abs().max() < 1e-5
        tensor(True)
    """

    def __init__(self, channels: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"ChannelLayerNorm: channels must be a positive int, got {channels!r}.")
        self.channels = channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` of shape ``(B, C, *spatial)`` over C."""
        if x.ndim < 2 or x.shape[1] != self.channels:
            raise ValueError(f"ChannelLayerNorm: expected (B, {self.channels}, ...) input, got {tuple(x.shape)}.")
        y = F.layer_norm(x.movedim(1, -1), (self.channels,), self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)
