"""NeuroDiffUNet: 3D noise-predicting U-Net of NeuroDiff with multi-scale conditioning (MSC) and Mamba (RGM) blocks."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock, get_timestep_embedding
from torch import nn

from .blocks._memory import maybe_checkpoint
from .blocks.msc import MSC
from .blocks.resampling import trilinear_upsample
from .blocks.inputs import check_conditional_inputs
from ..utils import check_voxel_size
from .blocks.rgm import RGM

__all__ = ["NeuroDiffUNet"]


class _Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that calls oneDNN (mkldnn) directly for float32 CPU inputs.

    PyTorch's dispatch heuristic (tuned on 2D) sends batch-1 3D convolutions with ``C * D * H <= 20480`` to the
    native ``slow_conv3d`` path, about 6x slower here (e.g. 64 channels at 8 x 32 x 32); with depth 8 that is most
    levels of this network. The oneDNN op computes the same convolution and has the same autograd formula.
    """

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled
        ):
            return torch.ops.aten.mkldnn_convolution(
                x.contiguous(), weight, bias, list(self.padding), list(self.stride), list(self.dilation), self.groups
            )
        return super()._conv_forward(x, weight, bias)


class _Upsample(nn.Module):
    """Trilinear up-sampling by ``scale`` followed by a 3x3x3 convolution (the reference's ``Upsample``)."""

    def __init__(self, channels: int, scale: tuple[int, int, int]) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(trilinear_upsample(x, self.scale))


class _Unit(nn.ModuleList):
    """Modules applied in order; ResNet blocks also receive the time embedding (guided diffusion's sequential)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, DiffusionUNetResnetBlock) else layer(x)
        return x


class NeuroDiffUNet(nn.Module):
    """Guided-diffusion style 3D U-Net that predicts the noise of x_t given a (membrane, mitochondria) condition.

    Liu et al. "Diffusion-based data augmentation for neuron segmentation" (NeuroDiff), section 2.1 and Fig. 2;
    layout and numbers follow the reference code (HeadLiuYun/NeuroDiff, ``diffusion_model/neurodiff.py``), itself
    derived from Dhariwal and Nichol, "Diffusion Models Beat GANs on Image Synthesis", https://arxiv.org/abs/2105.05233.

    1. time: sinusoidal features (max period 1000) of width ``time_channels``, then Linear, SiLU, Linear to
       ``4 * time_channels``;
    2. input: ``cat(x_t, condition)`` through a 3x3x3 convolution to the first level's width;
    3. encoder level l (width ``channels[l]``, in-plane factor ds = 2**l):
       ``num_res_blocks`` ResNet blocks (MONAI ``DiffusionUNetResnetBlock``: GroupNorm, SiLU, conv, + time,
       GroupNorm, SiLU, zero-initialised conv), each followed by an :class:`RGM` when ds is in ``rgm_factors``;
       with ``use_msc`` the level's :class:`MSC` hint is added to the output of every such unit; then a stride-2
       convolution, in-plane only (1, 2, 2) while ds < ``anisotropy_ratio``, else (2, 2, 2);
    4. middle: ResNet block, RGM, ResNet block;
    5. decoder, mirrored: per level ``num_res_blocks + 1`` ResNet blocks on ``cat(h, skip)``, each followed by an RGM
       when ds is in ``rgm_factors``; the level ends with trilinear up-sampling (the encoder's stride) and a conv;
    6. output: GroupNorm, SiLU, zero-initialised 3x3x3 conv to ``out_channels`` (so the network outputs 0 at init).

    ``use_msc`` and ``use_rgm`` give the paper's Table 4 ablation (MSC only, RGM only, both); without MSC the
    condition still enters through the input concatenation; without RGM the middle block is two ResNet blocks.

    Args:
        spatial_dims: only 3 is supported; default 3.
        in_channels: channels of x_t; default 1.
        cond_channels: channels of the condition (one-hot membrane, mitochondria in [-1, 1]); default 2.
        out_channels: channels of the predicted noise; default 1.
        channels: width of each level (MONAI's convention, as ``DiffusionModelUNet``); default
            ``(32, 64, 64, 128, 128, 256, 256)`` (the reference's ``model_channels`` 64 x ``channel_mult``
            (0.5, 1, 1, 2, 2, 4, 4), its choice for 512 x 512 patches).
        time_channels: width of the sinusoidal time features (the embedding has 4x as many); default 64 (the
            reference's ``model_channels``).
        num_res_blocks: ResNet blocks per encoder level (the decoder has one more); default 1.
        rgm_factors: in-plane down-sampling factors whose levels get RGM blocks; default ``(8, 16, 32)``.
        anisotropy_ratio: down-sampling is (1, 2, 2) while the in-plane factor is below this, (2, 2, 2) after; the
            reference uses patch width / depth (512 / 8 = 64), so with 7 levels depth is never down-sampled;
            default 64.
        voxel_size: ``(r_z, r_y, r_x)`` in nm for the RPGE coordinates; default ``(29, 6, 6)`` (AC3/AC4).
        use_msc: build the multi-scale conditioning; default True.
        use_rgm: build the RGM blocks; default True.
        rgm_residual: add the RGM input to its output (the reference has no such residual); default False.
        msc_channels: widths of the MSC condition embedding; default ``(32, 64, 128, 256)``.
        norm_num_groups: GroupNorm groups (every level width must be divisible by it); default 32.
        norm_eps: eps of the ResNet blocks' GroupNorms; default 1e-5, the reference's (``nn.GroupNorm``'s default;
            MONAI's ``DiffusionUNetResnetBlock`` defaults to 1e-6, which moved the output of the reference weights by
            2.6e-2).
        mamba_d_state, mamba_d_conv, mamba_expand: Mamba hyper-parameters; defaults 16, 4, 2.
        use_checkpointing: recompute each block in the backward pass instead of storing its activations
            (less memory, about one extra forward of time); default False.
        model_channels, channel_mult: deprecated (removed in the next release): the reference's base width and
            per-level multipliers; ``model_channels=m, channel_mult=c`` builds the same network as
            ``channels=[int(x * m) for x in c], time_channels=m`` (``DeprecationWarning``).

    Attributes:
        stride: ``(z, y, x)`` divisor every input size must have: the U-Net's total down-sampling, combined (least
            common multiple) with the MSC embedding's (1, 8, 8); ``(1, 64, 64)`` at the defaults.

    Returns:
        ``forward(x, timesteps, condition)`` with x ``(B, in_channels, D, H, W)``, timesteps ``(B,)`` and condition
        ``(B, cond_channels, D, H, W)`` (each spatial size divisible by ``stride``) returns the predicted noise
        ``(B, out_channels, D, H, W)``.

    Example:
        >>> net = NeuroDiffUNet(channels=(16, 16, 32, 32), time_channels=16, norm_num_groups=8)
        >>> net.stride
        (1, 8, 8)
        >>> net(torch.zeros(1, 1, 2, 16, 24), torch.tensor([3]), torch.zeros(1, 2, 2, 16, 24)).shape
        torch.Size([1, 1, 2, 16, 24])
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        cond_channels: int = 2,
        out_channels: int = 1,
        channels: Sequence[int] = (32, 64, 64, 128, 128, 256, 256),
        time_channels: int = 64,
        num_res_blocks: int = 1,
        rgm_factors: Sequence[int] = (8, 16, 32),
        anisotropy_ratio: float = 64,
        voxel_size: Sequence[float] = (29.0, 6.0, 6.0),
        use_msc: bool = True,
        use_rgm: bool = True,
        rgm_residual: bool = False,
        msc_channels: Sequence[int] = (32, 64, 128, 256),
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        mamba_d_state: int = 16,
        mamba_d_conv: int = 4,
        mamba_expand: int = 2,
        use_checkpointing: bool = False,
        *,
        model_channels: int | None = None,
        channel_mult: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError(f"NeuroDiffUNet: only spatial_dims=3 is supported, got {spatial_dims!r}.")
        if model_channels is not None or channel_mult is not None:
            channels, time_channels = _deprecated_widths(model_channels, channel_mult)
        for name, value in {
            "in_channels": in_channels,
            "cond_channels": cond_channels,
            "out_channels": out_channels,
            "time_channels": time_channels,
            "num_res_blocks": num_res_blocks,
            "norm_num_groups": norm_num_groups,
        }.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"NeuroDiffUNet: {name} must be a positive int, got {value!r}.")
        widths = tuple(channels)
        if not widths or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths):
            raise ValueError(f"NeuroDiffUNet: channels must be a non-empty sequence of positive ints, got {channels!r}.")
        if any(w % norm_num_groups for w in widths):
            raise ValueError(
                f"NeuroDiffUNet: every width of channels {widths} must be a multiple of norm_num_groups "
                f"({norm_num_groups})."
            )
        if not anisotropy_ratio > 0:
            raise ValueError(f"NeuroDiffUNet: anisotropy_ratio must be positive, got {anisotropy_ratio!r}.")
        voxel_size = check_voxel_size(voxel_size, "NeuroDiffUNet")
        self.in_channels, self.cond_channels, self.out_channels = in_channels, cond_channels, out_channels
        self.time_channels, self.widths = time_channels, widths
        self.use_msc, self.use_rgm, self.use_checkpointing = bool(use_msc), bool(use_rgm), bool(use_checkpointing)
        rgm_factors = set(rgm_factors)

        def res(c_in: int, c_out: int) -> DiffusionUNetResnetBlock:
            return DiffusionUNetResnetBlock(
                3, c_in, emb_channels, c_out, norm_num_groups=norm_num_groups, norm_eps=norm_eps
            )

        def unit(c_in: int, c_out: int, ds: int) -> _Unit:
            # an Identity holds the RGM's slot when there is none, so the state_dict keys of a network without RGM
            # are a subset of those with it (checkpoints of the Table 4 ablations load into one another partially)
            rgm = use_rgm and ds in rgm_factors
            return _Unit([res(c_in, c_out), rgm_block(c_out) if rgm else nn.Identity()])

        def rgm_block(channels: int) -> RGM:
            return RGM(channels, voxel_size, mamba_d_state, mamba_d_conv, mamba_expand, rgm_residual)

        emb_channels = 4 * time_channels
        self.time_embed = nn.Sequential(
            nn.Linear(time_channels, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels)
        )
        self.input_conv = nn.Conv3d(in_channels + cond_channels, widths[0], 3, padding=1)

        # encoder: units and down-sampling convolutions; skip widths kept for the decoder
        self.encoder = nn.ModuleList()
        self.downsample = nn.ModuleList()
        strides: list[tuple[int, int, int]] = []
        hint_ratios: list[tuple[int, int, int]] = []
        hint_channels: list[int] = []
        skip_widths = [widths[0]]
        ratio, ds, ch = (1, 1, 1), 1, widths[0]
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.encoder.append(unit(ch, width, ds))
                ch = width
                hint_ratios.append(ratio)
                hint_channels.append(width)
                skip_widths.append(ch)
            if level < len(widths) - 1:
                stride = (1, 2, 2) if ds < anisotropy_ratio else (2, 2, 2)
                self.downsample.append(nn.Conv3d(ch, ch, 3, stride=stride, padding=1))
                strides.append(stride)
                ratio = (ratio[0] * stride[0], ratio[1] * stride[1], ratio[2] * stride[2])
                ds *= 2
                skip_widths.append(ch)
        self.level_strides = tuple(strides)
        self.msc = MSC(hint_channels, hint_ratios, cond_channels, msc_channels) if use_msc else None
        self.hint_ratios = tuple(hint_ratios)
        # sizes must divide by the U-Net's total down-sampling and by the MSC embedding's (1, 8, 8)
        embed_ratio = self.msc.embed_ratio if self.msc is not None else (1, 1, 1)
        self._stride: tuple[int, int, int] = tuple(math.lcm(a, b) for a, b in zip(ratio, embed_ratio))  # type: ignore

        self.middle = _Unit([res(ch, ch), rgm_block(ch) if use_rgm else nn.Identity(), res(ch, ch)])

        # decoder: units in execution order (deepest level first); each level ends with an up-sampling
        self.decoder = nn.ModuleList()
        for level in range(len(widths) - 1, -1, -1):
            width = widths[level]
            for i in range(num_res_blocks + 1):
                decoder_unit = unit(ch + skip_widths.pop(), width, ds)
                ch = width
                if level and i == num_res_blocks:
                    decoder_unit.append(_Upsample(ch, strides[level - 1]))
                    ds //= 2
                self.decoder.append(decoder_unit)

        self.out = nn.Sequential(
            nn.GroupNorm(norm_num_groups, ch), nn.SiLU(), nn.Conv3d(ch, out_channels, 3, padding=1)
        )
        # every 3D convolution (ours, MONAI's ResNet blocks', the MSC's) takes the oneDNN path on CPU; same parameters
        for module in self.modules():
            if type(module) is nn.Conv3d:
                module.__class__ = _Conv3d
        # zero output conv: the untrained network predicts zero noise
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @property
    def stride(self) -> tuple[int, int, int]:
        """``(z, y, x)`` divisor of every input size (U-Net down-sampling and MSC embedding, combined)."""
        return self._stride

    def _check_inputs(self, x: torch.Tensor, timesteps: torch.Tensor | int, condition: torch.Tensor) -> torch.Tensor:
        return check_conditional_inputs(
            "NeuroDiffUNet", x, timesteps, condition, self.in_channels, self.cond_channels, self.stride, spatial_dims=3
        )

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | int, condition: torch.Tensor) -> torch.Tensor:
        """Predict the noise ``(B, out_channels, D, H, W)`` in ``x`` at ``timesteps`` given ``condition``."""
        timesteps = self._check_inputs(x, timesteps, condition)
        ckpt = self.use_checkpointing
        # 1. time embedding (guided diffusion: max period 1000 in the reference, cos then sin)
        emb = self.time_embed(get_timestep_embedding(timesteps, self.time_channels, max_period=1000).to(x.dtype))
        # 2. condition embedding for the MSC hints
        embedding = self.msc.embed(condition) if self.msc is not None else None
        # 3. encoder
        h = self.input_conv(torch.cat([x, condition], dim=1))
        skips = [h]
        per_level = len(self.encoder) // len(self.widths)
        for i, encoder_unit in enumerate(self.encoder):
            h = maybe_checkpoint(ckpt, encoder_unit, h, emb)
            if self.msc is not None:
                h = h + self.msc.hint(i, embedding)
            skips.append(h)
            if (i + 1) % per_level == 0 and (i + 1) // per_level < len(self.widths):
                h = self.downsample[(i + 1) // per_level - 1](h)
                skips.append(h)
        # 4. middle
        h = maybe_checkpoint(ckpt, self.middle, h, emb)
        # 5. decoder
        for decoder_unit in self.decoder:
            h = maybe_checkpoint(ckpt, decoder_unit, torch.cat([h, skips.pop()], dim=1), emb)
        # 6. output
        return self.out(h)


def _deprecated_widths(model_channels: int | None, channel_mult: Sequence[float] | None) -> tuple[list[int], int]:
    """Per-level widths and time width from the reference's ``model_channels`` x ``channel_mult`` (deprecated)."""
    model_channels = 64 if model_channels is None else model_channels
    channel_mult = (0.5, 1, 1, 2, 2, 4, 4) if channel_mult is None else tuple(channel_mult)
    if not isinstance(model_channels, int) or isinstance(model_channels, bool) or model_channels < 1:
        raise ValueError(f"NeuroDiffUNet: model_channels must be a positive int, got {model_channels!r}.")
    channels = [int(m * model_channels) for m in channel_mult]
    warnings.warn(
        f"NeuroDiffUNet: model_channels / channel_mult are deprecated and will be removed in the next release; pass "
        f"channels={channels}, time_channels={model_channels} instead.",
        DeprecationWarning,
        stacklevel=3,
    )
    return channels, model_channels
