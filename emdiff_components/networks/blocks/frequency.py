"""Size-agnostic FF-Parser filter: the frequency-domain part of the ECSD contrast enhancement module."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FFParserFilter"]


def _scale_spectrum(x: torch.Tensor, real_map: torch.Tensor, imag_map: torch.Tensor) -> torch.Tensor:
    """``irfft2(Re(F) * real_map + i Im(F) * imag_map)``, ``F = rfft2(x)``, in x's dtype and memory format.

    FFTs run in float32 or wider: half-precision FFTs are restricted to powers of two and lose accuracy; channels-last
    input is transformed as is (faster than making it contiguous first).
    """
    height, width = x.shape[-2:]
    spec = torch.fft.rfft2(x.to(torch.promote_types(x.dtype, torch.float32)))
    if torch.is_grad_enabled():
        spec = torch.complex(spec.real * real_map, spec.imag * imag_map)
    else:  # no graph: scale the spectrum in place (see _memory)
        parts = torch.view_as_real(spec)
        parts[..., 0].mul_(real_map)
        parts[..., 1].mul_(imag_map)
    out = torch.fft.irfft2(spec, s=(height, width))
    fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
    return out.to(dtype=x.dtype, memory_format=fmt)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _fft_grid_taps(indices: torch.Tensor, size: int, grid: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two grid points and weight that linearly interpolate a ``grid``-point spectrum stored in FFT order.

    Entry r reads the frequency ``indices[r] / size`` cycles per pixel (``indices`` are signed FFT bin numbers of an
    axis of ``size`` samples); grid index j holds the frequency ``j / grid`` (periodic, period 1, as ``fftfreq``).
    Returns ``(lower, upper, frac)``: the value is ``(1 - frac) * map[lower] + frac * map[upper]``. The position
    ``indices * grid / size`` is split into its integer floor and remainder with integer arithmetic, so an axis of
    exactly ``grid`` samples gives ``frac`` of exact zeros and ``lower`` the identity: the stored map itself.
    """
    scaled = indices.long() * grid
    lower = torch.div(scaled, size, rounding_mode="floor")
    frac = (scaled - lower * size).double() / size
    return lower.remainder(grid), (lower + 1).remainder(grid), frac


def _interpolate_axis(maps: torch.Tensor, dim: int, taps: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
    """``maps`` resampled along ``dim`` with the two-tap linear interpolation of :func:`_fft_grid_taps`.

    Two gathers and a blend: O(size) per line, where the dense (size, grid) interpolation matrix costs O(size * grid)
    multiply-adds of zeros (at the bundle's 512-point grid that was most of the CEM's time). Taps that read a run of
    the grid's own points (an axis of exactly ``grid`` samples) select it as a view, no copy."""
    lower, upper, frac = taps
    if not frac.any() and torch.equal(lower, torch.arange(len(lower)) + lower[0]):
        return maps.narrow(dim, int(lower[0]), len(lower))  # on the grid's own points (the reference size): a view
    lower, upper = lower.to(maps.device), upper.to(maps.device)
    shape = [1] * maps.ndim
    shape[dim] = -1
    frac = frac.to(device=maps.device, dtype=maps.dtype).view(shape)
    return maps.index_select(dim, lower) * (1 - frac) + maps.index_select(dim, upper) * frac


def _signed_bins(size: int) -> torch.Tensor:
    """FFT bin numbers of a ``size``-point axis in ``fft`` order: ``fftfreq(size) * size`` as integers."""
    bins = torch.arange(size)
    return torch.where(bins >= (size + 1) // 2, bins - size, bins)


class FFParserFilter(nn.Module):
    """FF-Parser filter of Cold SegDiffusion's CEM: one learnable gain per frequency for the real and imaginary parts.

    Wu et al. "MedSegDiff: Medical Image Segmentation with Diffusion Probabilistic Model",
    https://arxiv.org/abs/2211.00611 (FF-Parser), in the form of Yan et al. "Cold SegDiffusion" (KBS 2024) that ECSD
    (Qi et al.) inherits: ``z = FFT2(x)``, ``z' = theta * (Re(z) * M_re + i * Im(z) * M_im)``, output
    ``Re(IFFT2(z'))``. M_re and M_im are (C, G_h, G_w) maps in FFT order (index 0 is the zero frequency, as the
    reference stores them), theta is one (C, 1, 1) gain shared by both parts; all start at 1, so the filter starts as
    the identity.

    Size-agnostic (the reference only runs at an input of exactly (G_h, G_w)): grid index j holds the frequency
    ``j / G`` cycles per pixel, periodic in frequency, and the maps are resampled bilinearly at the frequencies of the
    input's FFT. At an input of exactly ``filter_size`` the interpolation weights are exact zeros and ones, so the
    maps are used as stored (:meth:`resampled_maps` returns them bit for bit) and the output is the reference's.

    Only the real part of the inverse FFT is kept, so for real x the output depends on the maps only through their
    Hermitian symmetrisation ``(M[k] + M[-k]) / 2``; the forward pass uses that to work on the half spectrum
    (``rfft2`` / ``irfft2``, half the FFT cost and memory of the full-spectrum form, same result up to rounding).

    Args:
        channels: number of channels C (positive int).
        filter_size: ``(G_h, G_w)`` (or one int for both) size of the stored maps, the reference's feature-map size
            at this level; default ``(64, 64)``.

    Returns:
        ``forward(x)`` maps ``(B, C, H, W)`` to ``(B, C, H, W)`` for any H, W >= 1.

    Example:
        >>> filt = FFParserFilter(4, filter_size=16)
        >>> x = torch.arange(2 * 4 * 24 * 40.0).reshape(2, 4, 24, 40).sin()
        >>> torch.allclose(filt(x), x, atol=1e-5)
        True
    """

    def __init__(self, channels: int, filter_size: int | Sequence[int] = (64, 64)) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"FFParserFilter: channels must be a positive int, got {channels!r}.")
        size = (filter_size, filter_size) if isinstance(filter_size, int) else tuple(filter_size)
        if len(size) != 2 or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in size):
            raise ValueError(f"FFParserFilter: filter_size must be one or two positive ints, got {filter_size!r}.")
        self.channels = channels
        self.filter_size = size
        self.map_real = nn.Parameter(torch.ones(channels, *size))
        self.map_imag = nn.Parameter(torch.ones(channels, *size))
        self.theta = nn.Parameter(torch.ones(channels, 1, 1))
        self._cache: tuple | None = None

    def _resample(self, weight: torch.Tensor, height: int, width: int, half: bool) -> torch.Tensor:
        """``weight`` (C, G_h, G_w) at the frequencies of an (height, width) FFT (``half``: of its ``rfft2``)."""
        col_bins = torch.arange(width // 2 + 1) if half else _signed_bins(width)
        rows = _fft_grid_taps(_signed_bins(height), height, self.filter_size[0])
        cols = _fft_grid_taps(col_bins, width, self.filter_size[1])
        return _interpolate_axis(_interpolate_axis(weight, 1, rows), 2, cols)

    def resampled_maps(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-spectrum maps ``(theta * M_re, theta * M_im)``, each (C, height, width), in FFT order."""
        return tuple(self._resample(w, height, width, half=False) * self.theta for w in (self.map_real, self.map_imag))

    def _half_spectrum_maps(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Hermitian-symmetrised maps on the ``rfft2`` half spectrum, each (C, height, width // 2 + 1).

        Without a graph (sampling) they are cached per input size until a parameter changes (its version counter)."""
        key = (height, width, *((p._version, p.data_ptr(), p.dtype) for p in (self.map_real, self.map_imag, self.theta)))
        if not torch.is_grad_enabled() and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        # grid index j and (-j) mod G hold opposite frequencies; periodic linear interpolation commutes with that
        # reflection, so the symmetrisation is done on the small grid (the reflection: flip, then roll by one)
        maps = tuple(
            self._resample(0.5 * self.theta * (w + w.flip(1, 2).roll((1, 1), (1, 2))), height, width, half=True)
            for w in (self.map_real, self.map_imag)
        )
        self._cache = (key, tuple(m.detach() for m in maps)) if not torch.is_grad_enabled() else None
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Filter ``x`` of shape ``(B, C, H, W)`` in the frequency domain."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"FFParserFilter: expected (B, {self.channels}, H, W) input, got {tuple(x.shape)}.")
        height, width = x.shape[-2:]
        return _scale_spectrum(x, *self._half_spectrum_maps(height, width))
