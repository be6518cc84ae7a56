"""Building blocks shared between the emdiff networks."""

from __future__ import annotations

from .attention import (
    ChannelAttention,
    SoftmaxCrossAttention,
    SpatialAttention,
    from_heads,
    linear_attention,
    to_heads,
)
from .bffm import ADRB, BFFM, CGR, boundary_edges
from .embeddings import TimestepEmbedding
from .frequency import FFParserFilter
from .inputs import check_conditional_inputs
from .normalization import ChannelLayerNorm
from .resnet import TimeResBlock

__all__ = [
    "ChannelAttention",
    "SpatialAttention",
    "SoftmaxCrossAttention",
    "to_heads",
    "from_heads",
    "linear_attention",
    "boundary_edges",
    "BFFM",
    "CGR",
    "ADRB",
    "TimestepEmbedding",
    "FFParserFilter",
    "check_conditional_inputs",
    "ChannelLayerNorm",
    "TimeResBlock",
]
from .mamba import MambaLayer
from .msc import MSC
from .rgm import RGM, RPGE

__all__ += ["MambaLayer", "MSC", "RPGE", "RGM"]
from .cold_segdiff import (
    ContrastEnhancementBlock,
    LinearSelfAttention,
    MIDBottleneck,
    SinusoidalTimeEmbedding,
    SoftmaxSelfAttention,
)

__all__ += [
    "SinusoidalTimeEmbedding",
    "LinearSelfAttention",
    "SoftmaxSelfAttention",
    "ContrastEnhancementBlock",
    "MIDBottleneck",
]
from .resampling import NearestUpsample, conv_downsample, entry_block, trilinear_upsample, up_cat_block

__all__ += ["conv_downsample", "NearestUpsample", "entry_block", "up_cat_block", "trilinear_upsample"]
from .checkpointed import CheckpointedUNet

__all__ += ["CheckpointedUNet"]
