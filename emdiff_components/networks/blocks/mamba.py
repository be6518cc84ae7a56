"""Mamba mixer that runs the mamba-ssm CUDA kernels when it can and the pure-PyTorch mambapy scan otherwise."""

from __future__ import annotations

import logging

import torch
from mambapy.mamba import MambaBlock, MambaConfig
from monai.utils import optional_import
from torch import nn
from torch.func import functional_call

__all__ = ["MambaLayer"]

logger = logging.getLogger(__name__)

# mamba-ssm is an optional extra (``pip install emdiff-components[mamba]``); it only builds with CUDA. Only the flag is
# kept at module level: the missing-package stub raises on any attribute access, which trips module introspection.
_HAS_MAMBA_SSM = optional_import("mamba_ssm", name="Mamba")[1]


def _mamba_ssm_class() -> type[nn.Module]:
    return optional_import("mamba_ssm", name="Mamba")[0]

# backends already announced in this process: one log line per backend, not one per call
_ANNOUNCED: set[str] = set()


def _announce(backend: str) -> None:
    if backend not in _ANNOUNCED:
        _ANNOUNCED.add(backend)
        if backend == "mamba_ssm":
            logger.info("MambaLayer: using the mamba-ssm CUDA kernels.")
        else:
            logger.info(
                "MambaLayer: using mambapy (pure PyTorch parallel scan); mamba-ssm %s.",
                "is installed but the input is not on CUDA" if _HAS_MAMBA_SSM else "is not installed",
            )


class MambaLayer(MambaBlock):
    """Selective state-space (Mamba) mixer over token sequences, ``(B, L, C) -> (B, L, C)``.

    Gu and Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", https://arxiv.org/abs/2312.00752
    (the mixer of Fig. 3: in-projection, causal depthwise conv, selective scan gated by SiLU(z), out-projection;
    no norm and no residual, those belong to the caller). Used by the RGM blocks of NeuroDiff.

    Two back-ends share one set of parameters: on a CUDA input, with ``mamba_ssm`` importable, the forward pass
    is ``mamba_ssm.Mamba``'s (fused kernels), evaluated with this module's tensors through
    ``torch.func.functional_call``; otherwise it is mambapy's ``MambaBlock`` (this class's base, parallel scan in
    PyTorch). The parameters are those of ``mamba_ssm.Mamba`` by name and shape (``in_proj.weight``,
    ``conv1d.weight``, ``conv1d.bias``, ``x_proj.weight``, ``dt_proj.weight``, ``dt_proj.bias``, ``A_log``, ``D``,
    ``out_proj.weight``), so a checkpoint moves between the back-ends and loads into ``mamba_ssm.Mamba`` itself.
    One log line per process says which back-end runs.

    Args:
        d_model: token width C (positive int).
        d_state: SSM state size N; default 16.
        d_conv: width of the causal depthwise convolution; default 4.
        expand: inner width factor (inner width ``expand * d_model``); default 2.

    Returns:
        ``forward(x)`` maps ``(B, L, d_model)`` to ``(B, L, d_model)``.

    Example:
        >>> layer = MambaLayer(8)
        >>> layer(torch.zeros(2, 10, 8)).shape
        torch.Size([2, 10, 8])
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2) -> None:
        for name, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MambaLayer: {name} must be a positive int, got {value!r}.")
        # dt_rank "auto" = ceil(d_model / 16), bias-free projections and a biased conv: mamba_ssm.Mamba's defaults
        config = MambaConfig(
            d_model=d_model, n_layers=1, d_state=d_state, expand_factor=expand, d_conv=d_conv, pscan=True
        )
        super().__init__(config)
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        # the mamba_ssm twin is built on first CUDA use and kept out of the module tree (no second set of keys)
        self._ssm_twin: list[nn.Module] = []

    def use_mamba_ssm(self, x: torch.Tensor) -> bool:
        """Whether ``forward(x)`` runs on the mamba-ssm kernels (importable, and ``x`` on CUDA)."""
        return bool(_HAS_MAMBA_SSM and x.is_cuda and torch.cuda.is_available())

    def _twin(self, x: torch.Tensor) -> nn.Module:
        if not self._ssm_twin:
            twin = _mamba_ssm_class()(
                d_model=self.d_model,
                d_state=self.d_state,
                d_conv=self.d_conv,
                expand=self.expand,
                dt_rank=self.config.dt_rank,
                device="meta",  # its own tensors are never used: functional_call supplies ours
            )
            self._ssm_twin.append(twin)
        return self._ssm_twin[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix ``(B, L, d_model)`` tokens along L."""
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"MambaLayer: x must have shape (B, L, {self.d_model}), got {tuple(x.shape)}.")
        if self.use_mamba_ssm(x):
            _announce("mamba_ssm")
            params = dict(self.named_parameters())
            return functional_call(self._twin(x), params, (x,), strict=True)
        _announce("mambapy")
        return super().forward(x)
