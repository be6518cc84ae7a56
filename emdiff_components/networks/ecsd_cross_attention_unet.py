"""The earlier emdiff ECSD network: cross-attention to the image at every encoder level (not the published one)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from monai.networks.blocks import Convolution
from torch import nn

from ..utils import is_positive_int
from .blocks.checkpointed import CheckpointedUNet
from .blocks.conditioning import ConditionalCrossAttentionModule, ContrastEnhancementModule
from .blocks.embeddings import TimestepEmbedding
from .blocks.inputs import check_conditional_inputs
from .blocks.resampling import NearestUpsample, conv_downsample, entry_block, up_cat_block
from .blocks.resnet import TimeResBlock

__all__ = ["ECSDCrossAttentionUNet"]


class _Encoder(nn.Module):
    """Stem convolution and the per-level ResBlocks / downsampling shared by the main and the conditional encoder."""

    def __init__(
        self, in_channels: int, widths: Sequence[int], num_res_blocks: int, temb_channels: int, norm_num_groups: int
    ) -> None:
        super().__init__()
        self.stem = Convolution(2, in_channels, widths[0], kernel_size=7, conv_only=True)
        self.levels = nn.ModuleList(
            nn.ModuleList(TimeResBlock(2, w, w, temb_channels, norm_num_groups) for _ in range(num_res_blocks))
            for w in widths
        )
        self.downs = nn.ModuleList(conv_downsample(widths[i], widths[i + 1]) for i in range(len(widths) - 1))


class ECSDCrossAttentionUNet(CheckpointedUNet):
    """The earlier emdiff ECSD network (cross-attention to the image at every level); NOT the published structure.

    Our first reading of Yan et al. "Cold SegDiffusion: A Novel Diffusion Model for Medical Image Segmentation",
    Knowledge-Based Systems 2024 and Qi et al. "A Boundary-aware Cold-Diffusion Model for Electron Microscopy
    Segmentation" (ECSD), Fig. 2. Checked against the public code it departs from it in the CEM, the skips, the
    attentions, the widths and the time features (see :class:`~emdiff_components.networks.ECSDUNet`, the published
    structure and the bundle's default). Kept as a named alternative, selected with
    ``"_target_": "emdiff_components.networks.ECSDCrossAttentionUNet"``, so that the learning curves of issue 9 can
    compare the two; checkpoints trained with ``ECSDUNet`` before it became the published structure load into it.

    Layout (widths ``w_i = channels[i]``,
    level i at resolution ``(H, W) / 2**i``, every ResBlock is a :class:`TimeResBlock` with GroupNorm and a
    time-embedding scale-shift):

    1. time: sinusoidal embedding of ``timesteps`` -> MLP -> ``4 * w_0`` features, given to every ResBlock.
    2. two encoders of the same structure, a main one on x_t and a conditional one on the image: 7x7 stem to
       ``w_0``; per level ``num_res_blocks`` ResBlocks; then a 2x2 stride-2 convolution to ``w_{i+1}``
       (no downsampling after the last level).
    3. on the main path, after the ResBlocks of every level, a :class:`ContrastEnhancementModule` (CEM): a
       size-agnostic learnable Fourier filter, LayerNorm, and linear cross-attention with queries from the main
       features and keys / values from the conditional-encoder features of the same level (this is how the image
       enters every level), then a ResBlock. Its output is the level's skip connection; skips carry main-encoder
       features only.
    4. bottleneck: :class:`ConditionalCrossAttentionModule` (CCAM) on the last-level main and conditional features.
    5. decoder, from the deepest level up: nearest upsampling + 3x3 convolution (except at the deepest level;
       computed exactly at low resolution, see ``NearestUpsample``), concatenation with the level's skip,
       ``num_res_blocks`` ResBlocks.
    6. output: a ResBlock on ``cat(x, stem output)`` and a 1x1 convolution to ``out_channels``. No output
       activation: the sampler clamps x0_hat to [-1, 1].

    Differences from the reference, on purpose: no fixed image size (the CEM filter maps live on ``filter_grid`` and
    are resampled to the input's spectrum); the CEM attention is linear (O(N d^2)) so it runs at full resolution;
    one skip per level. The conditional encoder receives the time embedding (as in the reference), so it is
    recomputed at every sampling step.

    CPU performance choices (none changes the function): activations and weights are channels-last (oneDNN 3x3
    convolutions ~1.7x faster); without autograd (sampling) the blocks overwrite their own temporaries in place,
    which avoids the page faults of fresh large tensors. Fresh large tensors stay a main cost under glibc: running
    the process with ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` raised made the 512 x 512 forward pass
    ~30 % faster on the 2-core test machine, but raised the training peak memory by ~50 %
    (``scripts/profile_ecsd_network.py --allocator both``).

    Args:
        spatial_dims: must be 2 (slices of 3D stacks are handled by the data code); default 2.
        in_channels: channels of x_t (1 for binary masks, the number of classes for multi-class); default 1.
        cond_channels: channels of the image condition; default 1.
        out_channels: channels of x0_hat, normally ``in_channels``; default 1.
        channels: width of each level (MONAI's convention, as ``DiffusionModelUNet``); default
            ``(64, 128, 256, 512)``. The total stride is ``2 ** (len(channels) - 1)``.
        num_res_blocks: ResBlocks per level in each encoder and in the decoder; default 2.
        norm_num_groups: GroupNorm groups; every width must be divisible by it; default 8.
        attention_head_channels: channels per attention head (CEM and CCAM); default 32.
        attention_heads: attention heads; default 4.
        filter_grid: ``(G_h, G_w)`` frequency grid of the CEM Fourier-filter maps; default ``(64, 64)``.
        use_checkpointing: while training with gradients on, recompute every ResBlock, CEM stage (filter + norm,
            attention, ResBlock) and CCAM block in the backward pass (``torch.utils.checkpoint``, non-reentrant,
            one sample at a time) instead of storing their activations; costs about one extra forward, cuts the
            peak memory several-fold; default False. Settable after construction.

    Attributes:
        stride: total down-sampling ``2 ** (len(channels) - 1)``; every input size must be divisible by it.

    Returns:
        ``forward(x, timesteps, condition)`` maps x ``(B, in_channels, H, W)``, timesteps ``(B,)`` (int or float)
        and condition ``(B, cond_channels, H, W)`` to x0_hat ``(B, out_channels, H, W)``. H and W may differ but must
        be divisible by the total stride.

    Example:
        >>> net = ECSDCrossAttentionUNet(channels=(16, 32), attention_heads=2, attention_head_channels=8)
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
        num_res_blocks: int = 2,
        norm_num_groups: int = 8,
        attention_head_channels: int = 32,
        attention_heads: int = 4,
        filter_grid: Sequence[int] = (64, 64),
        use_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(
                "ECSDCrossAttentionUNet: spatial_dims must be 2 (the method is 2D; stacks are processed slice by "
                f"slice), got {spatial_dims!r}."
            )
        for name, value in (
            ("in_channels", in_channels),
            ("cond_channels", cond_channels),
            ("out_channels", out_channels),
            ("num_res_blocks", num_res_blocks),
            ("norm_num_groups", norm_num_groups),
            ("attention_head_channels", attention_head_channels),
            ("attention_heads", attention_heads),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ECSDCrossAttentionUNet: {name} must be a positive int, got {value!r}.")
        widths = list(channels)
        if not widths or not all(is_positive_int(w) for w in widths):
            raise ValueError(
                f"ECSDCrossAttentionUNet: channels must be a non-empty sequence of positive ints, got {channels!r}."
            )
        time_channels = widths[0]
        for w in widths:
            if w % norm_num_groups != 0:
                raise ValueError(
                    f"ECSDCrossAttentionUNet: every width of channels {widths} must be divisible by "
                    f"norm_num_groups ({norm_num_groups}); {w} is not."
                )
        grid = tuple(filter_grid)
        if len(grid) != 2 or not all(isinstance(g, int) and g >= 1 for g in grid):
            raise ValueError(f"ECSDCrossAttentionUNet: filter_grid must be two positive ints, got {filter_grid!r}.")

        self.in_channels, self.cond_channels, self.out_channels = in_channels, cond_channels, out_channels
        self.widths = widths
        temb_channels = 4 * time_channels

        self.time_embedding = TimestepEmbedding(time_channels, temb_channels)
        self.encoder = _Encoder(in_channels, widths, num_res_blocks, temb_channels, norm_num_groups)
        self.cond_encoder = _Encoder(cond_channels, widths, num_res_blocks, temb_channels, norm_num_groups)
        self.cems = nn.ModuleList(
            ContrastEnhancementModule(
                w, w, temb_channels, norm_num_groups, attention_heads, attention_head_channels, grid, spatial_dims
            )
            for w in widths
        )
        self.ccam = ConditionalCrossAttentionModule(
            widths[-1], temb_channels, norm_num_groups, attention_heads, attention_head_channels
        )
        # decoder, stored deepest level first (the order it runs in)
        self.ups = nn.ModuleList(NearestUpsample(widths[i + 1], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.dec_levels = nn.ModuleList(
            nn.ModuleList(
                TimeResBlock(2, 2 * w if j == 0 else w, w, temb_channels, norm_num_groups)
                for j in range(num_res_blocks)
            )
            for w in reversed(widths)
        )
        self.final_block = TimeResBlock(2, 2 * widths[0], widths[0], temb_channels, norm_num_groups)
        self.final_conv = Convolution(2, widths[0], out_channels, kernel_size=1, conv_only=True)
        self.use_checkpointing = use_checkpointing
        # channels-last weights: oneDNN otherwise re-lays out every 3x3 kernel on every call (~12 % of a forward)
        self.to(memory_format=torch.channels_last)

    def checkpointed_modules(self) -> tuple[nn.Module, ...]:
        """The CEMs and the CCAM checkpoint inside themselves."""
        return (*self.cems, self.ccam)

    def _encode(
        self, encoder: _Encoder, x: torch.Tensor, temb: torch.Tensor, cond_feats: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Run one encoder; with ``cond_feats`` (main path) apply the CEMs.

        Returns the stem output (``None`` when checkpointing, see below) and the per-level features.
        """
        checkpointing = self.use_checkpointing and self.training and torch.is_grad_enabled()
        # with checkpointing, the stem / downsampling runs inside the first ResBlock's checkpoint, so that its
        # full-resolution output is recomputed in backward instead of stored
        stem = None if checkpointing else encoder.stem(x)
        h, feats = x if stem is None else stem, []
        for i, blocks in enumerate(encoder.levels):
            entry = encoder.downs[i - 1] if i > 0 else (encoder.stem if stem is None else None)
            h = self._run(partial(entry_block, entry, blocks[0]), h, temb)
            for block in blocks[1:]:
                h = self._run(block, h, temb)
            if cond_feats is not None:
                h = self.cems[i](h, cond_feats[i], temb)  # checkpoints its own stages
            feats.append(h)
        return stem, feats

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Predict x0 from the degraded mask ``x`` at ``timesteps`` given the image ``condition``."""
        timesteps = check_conditional_inputs(
            "ECSDCrossAttentionUNet", x, timesteps, condition, self.in_channels, self.cond_channels, self.stride
        )
        # channels-last: the oneDNN 3x3 convolutions run about 1.7x faster on CPU in this layout
        fmt = torch.channels_last
        x, condition = x.contiguous(memory_format=fmt), condition.contiguous(memory_format=fmt)

        # 1. time
        temb = self.time_embedding(timesteps)
        # 2. conditional encoder (its level features feed the CEMs and the CCAM)
        _, cond_feats = self._encode(self.cond_encoder, condition, temb, None)
        # 3. main encoder with a CEM per level; its level outputs are the skips
        stem, skips = self._encode(self.encoder, x, temb, cond_feats)
        # 4. bottleneck
        h = self.ccam(skips[-1], cond_feats[-1], temb)  # checkpoints its own blocks
        # 5. decoder: upsampling and concatenation run inside the first ResBlock's checkpoint (see _encode)
        for j, blocks in enumerate(self.dec_levels):
            up = self.ups[j - 1] if j > 0 else None
            h = self._run(partial(up_cat_block, up, blocks[0]), h, skips[-1 - j], temb)
            for block in blocks[1:]:
                h = self._run(block, h, temb)
        # 6. output
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
