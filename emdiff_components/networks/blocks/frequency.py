"""Size-agnostic learnable Fourier filter: the frequency-domain part of the ECSD contrast enhancement module."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LearnableFourierFilter"]


def _periodic_linear_weights(frequencies: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices and weights that linearly interpolate a centred, ``grid``-point spectrum at ``frequencies``.

    Grid index j holds the frequency ``(j - grid // 2) / grid`` cycles per pixel (the ``fftshift`` layout). The
    spectrum is periodic in frequency (period 1), so interpolation wraps around instead of clamping: +1/2 and -1/2,
    the same Nyquist frequency, read the same grid value.
    """
    position = frequencies * grid + grid // 2
    lower = torch.floor(position)
    frac = position - lower
    lower = lower.long().remainder(grid)
    return lower, (lower + 1).remainder(grid), frac


class LearnableFourierFilter(nn.Module):
    """Scale the real and imaginary parts of a feature map's 2D spectrum by learnable maps (any image size).

    Cold SegDiffusion (Yan et al., KBS 2024) and ECSD (Qi et al. "A Boundary-aware Cold-Diffusion Model for Electron
    Microscopy Segmentation"), contrast enhancement module: ``z = FFT2(x)``, ``z' = Re(z) * M_re * theta_re +
    i * Im(z) * M_im * theta_im``, output ``Re(IFFT2(z'))``. The maps M are (C, H, W) and theta (C, 1, 1), all
    initialised to 1, so the filter starts as the identity.

    Size-agnostic: the reference fixes (H, W). Here M lives on a fixed centred frequency grid ``filter_grid``
    (grid index j holds frequency ``(j - G // 2) / G``) and is resampled at run time by bilinear interpolation,
    periodic in frequency, at the frequencies of the input's FFT (``torch.fft.fftfreq``). This equals bilinear
    resampling of the ``fftshift``-ed spectrum followed by ``ifftshift``; at an input of exactly ``filter_grid`` size
    the maps are used as stored, and an all-ones map stays all ones at every size.

    Only the real part of the inverse FFT is kept, so the result depends on the maps only through their Hermitian
    symmetrisation ``(M[k] + M[-k]) / 2`` (``Re z`` is even and ``Im z`` odd in k for real x). The forward pass uses
    that identity to work on the half spectrum (``rfft2`` / ``irfft2``), which halves the FFT cost and memory while
    giving the same output as the full-spectrum computation above (tested against numpy).

    Args:
        channels: number of channels C (positive int).
        filter_grid: ``(G_h, G_w)`` size of the stored frequency grid; default ``(64, 64)``.

    Returns:
        ``forward(x)`` maps ``(B, C, H, W)`` to ``(B, C, H, W)`` for any H, W >= 1.

    Example:
        >>> filt = LearnableFourierFilter(4, filter_grid=(16, 16))
        >>> x = torch.randn(2, 4, 24, 40)
        >>> torch.allclose(filt(x), x, atol=1e-5)
        True
    """

    def __init__(self, channels: int, filter_grid: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"LearnableFourierFilter: channels must be a positive int, got {channels!r}.")
        grid = tuple(filter_grid)
        if len(grid) != 2 or not all(isinstance(g, int) and g >= 1 for g in grid):
            raise ValueError(f"LearnableFourierFilter: filter_grid must be two positive ints, got {filter_grid!r}.")
        self.channels = channels
        self.filter_grid = grid
        self.weight_real = nn.Parameter(torch.ones(channels, *grid))
        self.weight_imag = nn.Parameter(torch.ones(channels, *grid))
        self.theta_real = nn.Parameter(torch.ones(channels, 1, 1))
        self.theta_imag = nn.Parameter(torch.ones(channels, 1, 1))

    def _resample(
        self, weight: torch.Tensor, freq_h: torch.Tensor, freq_w: torch.Tensor
    ) -> torch.Tensor:  # (C, len(freq_h), len(freq_w))
        h0, h1, fh = _periodic_linear_weights(freq_h, self.filter_grid[0])
        w0, w1, fw = _periodic_linear_weights(freq_w, self.filter_grid[1])
        # separable bilinear interpolation: first along H, then along W (two gathers each, no dense matrices)
        rows = weight[:, h0, :] * (1 - fh)[:, None] + weight[:, h1, :] * fh[:, None]
        return rows[:, :, w0] * (1 - fw) + rows[:, :, w1] * fw

    def resampled_maps(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-spectrum maps ``(M_re * theta_re, M_im * theta_im)``, each (C, height, width), in FFT order."""
        device = self.weight_real.device
        freq_h = torch.fft.fftfreq(height, device=device, dtype=torch.float64).float()
        freq_w = torch.fft.fftfreq(width, device=device, dtype=torch.float64).float()
        real = self._resample(self.weight_real, freq_h, freq_w) * self.theta_real
        imag = self._resample(self.weight_imag, freq_h, freq_w) * self.theta_imag
        return real, imag

    def _half_spectrum_maps(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Hermitian-symmetrised maps on the ``rfft2`` half spectrum, each (C, height, width // 2 + 1)."""
        device = self.weight_real.device
        freq_h = torch.fft.fftfreq(height, device=device, dtype=torch.float64)
        freq_w = torch.fft.rfftfreq(width, device=device, dtype=torch.float64)
        # the wanted frequencies and their negatives; -f is taken in float64 then cast so that f and -f hit
        # mirror-image grid positions exactly
        pos = (freq_h.float(), freq_w.float())
        neg = ((-freq_h).float(), (-freq_w).float())
        maps = []
        for weight, theta in ((self.weight_real, self.theta_real), (self.weight_imag, self.theta_imag)):
            sym = 0.5 * (self._resample(weight, *pos) + self._resample(weight, *neg))
            maps.append(sym * theta)
        return maps[0], maps[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Filter ``x`` of shape ``(B, C, H, W)`` in the frequency domain."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"LearnableFourierFilter: expected (B, {self.channels}, H, W) input, got {tuple(x.shape)}.")
        height, width = x.shape[-2:]
        real_map, imag_map = self._half_spectrum_maps(height, width)
        # FFTs in float32 at least: half-precision FFTs are restricted to powers of two and lose accuracy
        spec = torch.fft.rfft2(x.contiguous().float())
        spec = torch.complex(spec.real * real_map, spec.imag * imag_map)
        out = torch.fft.irfft2(spec, s=(height, width))
        return out.to(dtype=x.dtype, memory_format=torch.channels_last if _is_channels_last(x) else torch.contiguous_format)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
