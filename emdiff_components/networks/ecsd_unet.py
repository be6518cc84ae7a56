"""ECSD / Cold SegDiffusion ResUNet: predicts the clean mask x0 from the degraded mask x_t and the image."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial

import torch
from monai.networks.blocks import Convolution
from torch import nn

from ..utils import is_positive_int
from .blocks._memory import add_
from .blocks.checkpointed import CheckpointedUNet
from .blocks.cold_segdiff import (
    ContrastEnhancementBlock,
    LinearSelfAttention,
    MIDBottleneck,
    SinusoidalTimeEmbedding,
    SoftmaxSelfAttention,
)
from .blocks.inputs import check_conditional_inputs
from .blocks.resampling import NearestUpsample, conv_downsample, entry_block, up_cat_block
from .blocks.resnet import TimeResBlock

__all__ = ["ECSDUNet"]


class _Level(nn.Module):
    """One level of an encoder or of the decoder: two ResBlocks, a residual self-attention, a resampling."""

    def __init__(
        self, block_in: Sequence[int], width: int, resample: nn.Module, softmax: bool, temb: int, groups: int, heads
    ) -> None:
        super().__init__()
        self.block1 = TimeResBlock(2, block_in[0], width, temb, groups)
        self.block2 = TimeResBlock(2, block_in[1], width, temb, groups)
        attention = SoftmaxSelfAttention if softmax else LinearSelfAttention
        self.attention = attention(width, *heads)
        self.resample = resample


class _Encoder(nn.Module):
    """7x7 stem and the levels of one encoder (the main one on x_t and the conditional one on the image)."""

    def __init__(self, in_channels: int, dims: Sequence[int], softmax: Sequence[bool], temb: int, groups, heads):
        super().__init__()
        self.stem = Convolution(2, in_channels, dims[0], kernel_size=7, conv_only=True)
        last = len(dims) - 2
        self.levels = nn.ModuleList(
            _Level(
                (dims[i], dims[i]),
                dims[i],
                conv_downsample(dims[i], dims[i + 1])
                if i < last
                else Convolution(2, dims[i], dims[i + 1], kernel_size=3, conv_only=True),
                softmax[i],
                temb,
                groups,
                heads,
            )
            for i in range(last + 1)
        )


class ECSDUNet(CheckpointedUNet):
    """The Cold SegDiffusion ResUNet that ECSD inherits: x0 prediction from the degraded mask x_t and the image.

    Yan et al. "Cold SegDiffusion: A Novel Diffusion Model for Medical Image Segmentation", Knowledge-Based Systems
    2024; Qi et al. "A Boundary-aware Cold-Diffusion Model for Electron Microscopy Segmentation" (ECSD), Fig. 2.
    The published structure, checked tensor by tensor against the public reference code (its weights load through
    :func:`~emdiff_components.networks.convert_cold_segdiff_state_dict` and reproduce its outputs). With
    ``channels = (w_1, .., w_L)`` (the reference's ``dim * dim_mult``), ``w_0 = init_channels`` and the level
    widths ``(w_0, .., w_{L-1})``; every ResBlock is a :class:`TimeResBlock` (GroupNorm, time scale-shift):

    1. time: sin|cos features of ``w_0`` channels (:class:`SinusoidalTimeEmbedding`) -> MLP -> ``4 w_0``.
    2. two encoders of one structure, the main one on x_t and the conditional one on the image: 7x7 stem to
       ``w_0``; per level i: ResBlock, skip (main only), ResBlock, residual self-attention (linear; softmax at the
       levels of ``full_attention``, by default the last); on the main path only the CEM
       (:class:`ContrastEnhancementBlock`: FF-Parser filter, LayerNorm, CBAM linear self-attention, ResBlock) and a
       second skip; then a 2x2 stride-2 convolution to ``w_{i+1}`` (the last level: a 3x3 convolution to
       ``w_L``, no downsampling). The image never enters the encoder levels of the main path.
    3. bottleneck (:class:`MIDBottleneck`, ECSD's CCAM): ``c = cond_mid1(c)``, ``x = mid1(x) + c``, the MID
       transformer on (x, c), ``mid2``.
    4. decoder, deepest level first: ResBlock on ``cat(x, second skip)``, ResBlock on ``cat(x, first skip)``,
       residual self-attention, then nearest upsampling + 3x3 convolution to the next width (the top level: a 3x3
       convolution to ``w_0``).
    5. output: ResBlock on ``cat(x, stem output)`` and a 1x1 convolution. No output activation.

    Ours beyond the reference, none of which changes its function: any input size divisible by ``stride`` (the
    reference fixes it; the FF-Parser maps live on a fixed grid of ``filter_size / 2**i`` per level and are
    resampled to the input's spectrum, exactly the stored maps at ``filter_size``); multi-class masks
    (``in_channels`` / ``out_channels``); CPU speed (channels-last activations and weights, the upsampling computed
    at low resolution, in-place temporaries without autograd, linear attention that never builds the attention
    output); activation checkpointing for training (``use_checkpointing``).

    Args:
        spatial_dims: must be 2 (slices of 3D stacks are handled by the data code); default 2.
        in_channels: channels of x_t (1 for binary masks, the number of classes for multi-class); default 1.
        cond_channels: channels of the image condition; default 1.
        out_channels: channels of x0_hat, normally ``in_channels``; default 1.
        channels: output width of each level, the reference's ``dim * dim_mult``; default ``(64, 128, 256, 512)``
            (``dim=64``). The total stride is ``2 ** (len(channels) - 1)``. Deprecated: an int is read as the base
            width of the old ``channels`` + ``channel_mults`` pair (``DeprecationWarning``).
        init_channels: width of the stems and of the first level, the reference's ``init_dim`` (which must equal its
            ``dim``); ``None`` (default) means ``channels[0]``. It is also the number of sinusoidal time features.
        full_attention: per level, softmax (True) or linear (False) self-attention; ``None`` (default) means softmax
            at the last level only, the reference's ``full_self_attn=(False, False, False, True)``.
        norm_num_groups: GroupNorm groups; ``init_channels`` and every width must be divisible by it; default 8.
        attention_heads: attention heads of every attention; default 4.
        attention_head_channels: channels per head; default 32.
        filter_size: ``(H, W)`` (or one int) at which the FF-Parser maps are stored, the reference's ``image_size``:
            level i keeps maps of ``filter_size // 2**i``; default 256.
        transformer_depth: layers of the MID transformer; default 1.
        use_checkpointing: while training with gradients on, recompute every block in the backward pass
            (``torch.utils.checkpoint``, non-reentrant, one sample at a time) instead of storing its activations;
            costs about one extra forward, cuts the peak memory several-fold; default False. Settable.
        channel_mults: deprecated (removed in the next release): width multipliers of an int ``channels``;
            ``channels=64, channel_mults=(1, 2, 4, 8)`` builds the same network as ``channels=(64, 128, 256, 512)``.

    Attributes:
        stride: total down-sampling ``2 ** (len(channels) - 1)``; every input size must be divisible by it.

    Returns:
        ``forward(x, timesteps, condition)`` maps x ``(B, in_channels, H, W)``, timesteps ``(B,)`` (int or float)
        and condition ``(B, cond_channels, H, W)`` to x0_hat ``(B, out_channels, H, W)``.

    Example:
        >>> net = ECSDUNet(channels=(16, 32), attention_heads=2, attention_head_channels=8, filter_size=32)
        >>> x0_hat = net(torch.zeros(2, 1, 32, 48), torch.tensor([3, 40]), torch.ones(2, 1, 32, 48))
        >>> x0_hat.shape
        torch.Size([2, 1, 32, 48])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        cond_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] | int = (64, 128, 256, 512),
        init_channels: int | None = None,
        full_attention: Sequence[bool] | None = None,
        norm_num_groups: int = 8,
        attention_heads: int = 4,
        attention_head_channels: int = 32,
        filter_size: int | Sequence[int] = 256,
        transformer_depth: int = 1,
        use_checkpointing: bool = False,
        *,
        channel_mults: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(
                f"ECSDUNet: spatial_dims must be 2 (the method is 2D; stacks are processed slice by slice), "
                f"got {spatial_dims!r}."
            )
        for name, value in (
            ("in_channels", in_channels),
            ("cond_channels", cond_channels),
            ("out_channels", out_channels),
            ("norm_num_groups", norm_num_groups),
            ("attention_head_channels", attention_head_channels),
            ("attention_heads", attention_heads),
            ("transformer_depth", transformer_depth),
        ):
            if not is_positive_int(value):
                raise ValueError(f"ECSDUNet: {name} must be a positive int, got {value!r}.")
        widths = _level_widths(channels, channel_mults)
        init_channels = widths[0] if init_channels is None else init_channels
        if not is_positive_int(init_channels) or init_channels % 2 or init_channels < 4:
            raise ValueError(f"ECSDUNet: init_channels must be an even int >= 4, got {init_channels!r}.")
        dims = [init_channels, *widths]  # level i works at dims[i] and widens to dims[i + 1]
        for w in dims:
            if w % norm_num_groups != 0:
                raise ValueError(
                    f"ECSDUNet: init_channels and every width of channels {widths} must be divisible by "
                    f"norm_num_groups ({norm_num_groups}); {w} is not."
                )
        levels = len(widths)
        softmax = tuple([False] * (levels - 1) + [True]) if full_attention is None else tuple(full_attention)
        if len(softmax) != levels or not all(isinstance(s, bool) for s in softmax):
            raise ValueError(
                f"ECSDUNet: full_attention must be {levels} bools (one per level of channels), got {full_attention!r}."
            )
        size = (filter_size, filter_size) if isinstance(filter_size, int) else tuple(filter_size)
        if len(size) != 2 or not all(is_positive_int(s) and s >= 2 ** (levels - 1) for s in size):
            raise ValueError(
                f"ECSDUNet: filter_size must be one or two ints >= {2 ** (levels - 1)} (the total stride), "
                f"got {filter_size!r}."
            )

        self.in_channels, self.cond_channels, self.out_channels = in_channels, cond_channels, out_channels
        self.widths, self.init_channels = widths, init_channels
        temb = 4 * init_channels
        heads = (attention_heads, attention_head_channels)

        self.time_embedding = SinusoidalTimeEmbedding(init_channels, temb)
        self.encoder = _Encoder(in_channels, dims, softmax, temb, norm_num_groups, heads)
        self.cond_encoder = _Encoder(cond_channels, dims, softmax, temb, norm_num_groups, heads)
        self.cems = nn.ModuleList(
            ContrastEnhancementBlock(
                dims[i], norm_num_groups, *heads, filter_size=(size[0] // 2**i, size[1] // 2**i)
            )
            for i in range(levels)
        )
        self.bottleneck = MIDBottleneck(dims[-1], temb, norm_num_groups, *heads, ff_mult=4, depth=transformer_depth)
        # decoder, deepest level first (the order it runs in): level i takes skips of dims[i] channels
        self.decoder = nn.ModuleList(
            _Level(
                (dims[i + 1] + dims[i], dims[i + 1] + dims[i]),
                dims[i + 1],
                NearestUpsample(dims[i + 1], dims[i])
                if i > 0
                else Convolution(2, dims[1], dims[0], kernel_size=3, conv_only=True),
                softmax[i],
                temb,
                norm_num_groups,
                heads,
            )
            for i in reversed(range(levels))
        )
        self.final_block = TimeResBlock(2, 2 * init_channels, init_channels, temb, norm_num_groups)
        self.final_conv = Convolution(2, init_channels, out_channels, kernel_size=1, conv_only=True)
        self.use_checkpointing = use_checkpointing
        # channels-last weights: oneDNN otherwise re-lays out every 3x3 kernel on every call (~12 % of a forward)
        self.to(memory_format=torch.channels_last)

    def checkpointed_modules(self) -> tuple[nn.Module, ...]:
        """The CEMs and the bottleneck checkpoint inside themselves."""
        return (*self.cems, self.bottleneck)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Predict x0 from the degraded mask ``x`` at ``timesteps`` given the image ``condition``."""
        timesteps = check_conditional_inputs(
            "ECSDUNet", x, timesteps, condition, self.in_channels, self.cond_channels, self.stride
        )
        # channels-last: the oneDNN 3x3 convolutions run about 1.7x faster on CPU in this layout
        fmt = torch.channels_last
        x, condition = x.contiguous(memory_format=fmt), condition.contiguous(memory_format=fmt)
        checkpointing = self.use_checkpointing and self.training and torch.is_grad_enabled()

        # 1. time
        temb = self.time_embedding(timesteps)
        # 2. both encoders; with checkpointing a stem / downsampling runs inside the next ResBlock's checkpoint, so
        # that its output is recomputed in backward instead of stored
        stem = None if checkpointing else self.encoder.stem(x)
        h = x if stem is None else stem
        c = condition if checkpointing else self.cond_encoder.stem(condition)
        skips = []
        for i, cem in enumerate(self.cems):
            level, cond_level = self.encoder.levels[i], self.cond_encoder.levels[i]
            cond_entry = _entry(self.cond_encoder, i, checkpointing)
            h = self._run(partial(entry_block, _entry(self.encoder, i, checkpointing), level.block1), h, temb)
            c = self._run(partial(entry_block, cond_entry, cond_level.block1), c, temb)
            skips.append(h)
            h = self._run(partial(_block_attention, level), h, temb)
            c = self._run(partial(_block_attention, cond_level), c, temb)
            h = cem(h)  # checkpoints its own stages
            skips.append(h)
        h = self._run(self.encoder.levels[-1].resample, h)
        c = self._run(self.cond_encoder.levels[-1].resample, c)
        # 3. bottleneck: the only place where the image features join the main path
        h = self.bottleneck(h, c, temb)  # checkpoints its own blocks
        # 4. decoder; the upsampling runs inside the next level's first checkpoint
        for j, level in enumerate(self.decoder):
            up = self.decoder[j - 1].resample if j > 0 else None
            h = self._run(partial(up_cat_block, up, level.block1), h, skips.pop(), temb)
            h = self._run(partial(up_cat_block, None, level.block2), h, skips.pop(), temb)
            h = self._run(partial(_residual, level.attention), h)
        h = self._run(self.decoder[-1].resample, h)
        # 5. output
        if stem is None:
            # checkpointing: the stem output is recomputed from x (a 7x7 convolution of a few channels) rather than
            # kept alive from the start of the forward pass to the end
            return self._run(self._head, h, x, temb).contiguous()
        return self._head(h, x, temb, stem).contiguous()

    def _head(
        self, h: torch.Tensor, x: torch.Tensor, temb: torch.Tensor, stem: torch.Tensor | None = None
    ) -> torch.Tensor:
        stem = self.encoder.stem(x) if stem is None else stem
        return self.final_conv(self.final_block(torch.cat([h, stem], dim=1), temb))


def _level_widths(channels: Sequence[int] | int, channel_mults: Sequence[int] | None) -> list[int]:
    """Per-level widths from ``channels`` or the deprecated int + multipliers."""
    if channel_mults is None and not isinstance(channels, int):
        widths = list(channels)
        if not widths or not all(is_positive_int(w) for w in widths):
            raise ValueError(f"ECSDUNet: channels must be a non-empty sequence of positive ints, got {channels!r}.")
        return widths
    mults = tuple((1, 2, 4, 8) if channel_mults is None else channel_mults)
    if not is_positive_int(channels):
        raise ValueError(f"ECSDUNet: channels must be a positive int when channel_mults is given, got {channels!r}.")
    if not mults or not all(is_positive_int(m) for m in mults):
        raise ValueError(f"ECSDUNet: channel_mults must be a non-empty sequence of positive ints, got {mults!r}.")
    widths = [channels * m for m in mults]
    old = f"channels={channels}" + ("" if channel_mults is None else f", channel_mults={mults}")
    warnings.warn(
        f"ECSDUNet: {old} is deprecated and will be removed in the next release; pass the per-level widths "
        f"channels={widths} instead.",
        DeprecationWarning,
        stacklevel=3,
    )
    return widths


def _entry(encoder: _Encoder, i: int, checkpointing: bool) -> nn.Module | None:
    """What runs before level i's first ResBlock: the previous level's downsampling; at level 0 with checkpointing the
    stem (recomputed in backward instead of stored)."""
    if i > 0:
        return encoder.levels[i - 1].resample
    return encoder.stem if checkpointing else None


def _residual(attention: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return add_(attention(h), h)


def _block_attention(level: _Level, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    h = level.block2(h, temb)
    return add_(level.attention(h), h)
