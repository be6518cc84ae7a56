"""NeuroDiff's resolution-prior guided global modeling (RGM): coordinate encoding plus Mamba over all voxels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...utils import check_voxel_size
from .mamba import MambaLayer

__all__ = ["RPGE", "RGM"]


class RPGE(nn.Module):
    """Resolution-prior guided encoding: an MLP of voxel coordinates scaled by the voxel size.

    NeuroDiff (Liu et al., "Diffusion-based data augmentation for neuron segmentation"), eq. (3):
    ``RPGE(z, y, x) = MLP([z * r_z, y * r_xy, x * r_xy])``. As in the reference code (HeadLiuYun/NeuroDiff,
    ``get_positional_encoding``), the coordinates are the integer voxel indices of the feature grid the encoding is
    added to (0 .. D-1, 0 .. H-1, 0 .. W-1, not rescaled to the input grid or normalised), multiplied by the voxel
    size, and the MLP is ``Linear(3, C), ReLU, Linear(C, C)``.

    Args:
        channels: feature width C (positive int).
        voxel_size: ``(r_z, r_y, r_x)`` in nm; default ``(29, 6, 6)`` (AC3/AC4).

    Returns:
        ``forward(shape)`` maps a grid size ``(D, H, W)`` to the encoding ``(1, C, D, H, W)``;
        ``coordinates(shape)`` gives the MLP input ``(D * H * W, 3)`` (x fastest).

    Example:
        >>> rpge = RPGE(8, voxel_size=(29, 6, 6))
        >>> rpge((2, 4, 4)).shape
        torch.Size([1, 8, 2, 4, 4])
    """

    def __init__(self, channels: int, voxel_size: Sequence[float] = (29.0, 6.0, 6.0)) -> None:
        super().__init__()
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ValueError(f"RPGE: channels must be a positive int, got {channels!r}.")
        self.channels = channels
        # a buffer, so that a checkpoint carries the voxel size its network was trained with
        self.register_buffer("resolution", torch.tensor(check_voxel_size(voxel_size, "RPGE"), dtype=torch.float32))
        self.mlp = nn.Sequential(nn.Linear(3, channels), nn.ReLU(), nn.Linear(channels, channels))

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """``(r_z, r_y, r_x)`` in nm: the constructor's, or the one loaded with the weights."""
        return tuple(float(v) for v in self.resolution.tolist())

    def coordinates(self, shape: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
        """Scaled voxel coordinates ``(D * H * W, 3)`` as ``(z * r_z, y * r_y, x * r_x)``, in (z, y, x) raster order."""
        if len(shape) != 3 or any(int(s) < 1 for s in shape):
            raise ValueError(f"RPGE: shape must be three positive sizes (D, H, W), got {tuple(shape)!r}.")
        axes = [torch.arange(int(s), device=device, dtype=torch.float32) * r for s, r in zip(shape, self.voxel_size)]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)

    def forward(self, shape: Sequence[int]) -> torch.Tensor:
        """Encoding ``(1, C, D, H, W)`` of the grid ``shape = (D, H, W)``."""
        weight = self.mlp[0].weight
        pe = self.mlp(self.coordinates(shape, weight.device).to(weight.dtype))  # (D*H*W, C)
        return pe.t().reshape(1, self.channels, *(int(s) for s in shape))


class RGM(nn.Module):
    """Resolution-prior guided global modeling: RPGE added to the features, then LayerNorm and Mamba over all voxels.

    NeuroDiff section 2.1 ("Resolution-Prior Guided Global Modeling"): the volume is flattened into one sequence of
    D * H * W voxel tokens, in (z, y, x) raster order with x fastest (the reference's ``x -> y -> z`` scan), so that
    one Mamba layer models dependencies between all voxels. The reference code (``CrossMamba``) returns the Mamba
    output itself, with no residual connection around it; that is the default here, and ``residual=True`` adds
    the input back (``f + Mamba(LN(f + RPGE))``) for a pre-norm residual variant.

    Args:
        channels: feature width C (positive int).
        voxel_size: ``(r_z, r_y, r_x)`` in nm for the RPGE; default ``(29, 6, 6)``.
        d_state: Mamba state size; default 16.
        d_conv: Mamba convolution width; default 4.
        expand: Mamba expansion factor; default 2.
        residual: add the block input to the Mamba output; default False (reference behaviour).

    Returns:
        ``forward(x)`` maps ``(B, C, D, H, W)`` to ``(B, C, D, H, W)``.

    Example:
        >>> rgm = RGM(8)
        >>> rgm(torch.zeros(1, 8, 2, 4, 4)).shape
        torch.Size([1, 8, 2, 4, 4])
    """

    def __init__(
        self,
        channels: int,
        voxel_size: Sequence[float] = (29.0, 6.0, 6.0),
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ValueError(f"RGM: channels must be a positive int, got {channels!r}.")
        self.channels, self.residual = channels, bool(residual)
        self.rpge = RPGE(channels, voxel_size)
        self.norm = nn.LayerNorm(channels)
        self.mamba = MambaLayer(channels, d_state=d_state, d_conv=d_conv, expand=expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply RPGE, LayerNorm and Mamba to ``(B, C, D, H, W)`` features."""
        if x.ndim != 5 or x.shape[1] != self.channels:
            raise ValueError(f"RGM: x must have shape (B, {self.channels}, D, H, W), got {tuple(x.shape)}.")
        b, c, *spatial = x.shape
        h = x + self.rpge(spatial).to(x.dtype)
        tokens = h.flatten(2).transpose(1, 2)  # (B, D*H*W, C), x fastest
        out = self.mamba(self.norm(tokens)).transpose(1, 2).reshape(b, c, *spatial)
        return out + x if self.residual else out
