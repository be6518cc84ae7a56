"""Diffusion time-step embedding: sinusoidal features followed by a small MLP."""

from __future__ import annotations

import torch
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import nn

__all__ = ["TimestepEmbedding"]


class TimestepEmbedding(nn.Module):
    """Sinusoidal time-step embedding followed by a two-layer MLP.

    Ho et al. "Denoising Diffusion Probabilistic Models", https://arxiv.org/abs/2006.11239 (sinusoidal features,
    computed by MONAI's ``get_timestep_embedding``); the MLP (Linear, GELU, Linear) follows the med-seg-diff layout
    used by Cold SegDiffusion.

    Args:
        channels: number of sinusoidal features (positive int).
        embedding_channels: output width; ``None`` (default) gives ``4 * channels``.
        max_period: controls the lowest frequency of the sinusoids; default 10000.

    Returns:
        ``forward(timesteps)`` maps ``(B,)`` integer or float time steps to ``(B, embedding_channels)``.

    Example:
        >>> emb = TimestepEmbedding(16)
        >>> emb(torch.tensor([0, 49])).shape
        torch.Size([2, 64])
    """

    def __init__(self, channels: int, embedding_channels: int | None = None, max_period: int = 10000) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"TimestepEmbedding: channels must be a positive int, got {channels!r}.")
        embedding_channels = 4 * channels if embedding_channels is None else embedding_channels
        if not isinstance(embedding_channels, int) or embedding_channels < 1:
            raise ValueError(
                f"TimestepEmbedding: embedding_channels must be a positive int, got {embedding_channels!r}."
            )
        self.channels = channels
        self.embedding_channels = embedding_channels
        self.max_period = max_period
        self.mlp = nn.Sequential(
            nn.Linear(channels, embedding_channels), nn.GELU(), nn.Linear(embedding_channels, embedding_channels)
        )

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Embed ``(B,)`` time steps into ``(B, embedding_channels)``."""
        if timesteps.ndim != 1:
            raise ValueError(f"TimestepEmbedding: timesteps must have shape (B,), got {tuple(timesteps.shape)}.")
        features = get_timestep_embedding(timesteps, self.channels, self.max_period)
        return self.mlp(features.to(self.mlp[0].weight.dtype))
