"""Building blocks shared between the emdiff networks."""

from __future__ import annotations

from .attention import ChannelAttention, LinearCrossAttention, SoftmaxCrossAttention, SpatialAttention
from .conditioning import ConditionalCrossAttentionModule, ContrastEnhancementModule
from .embeddings import TimestepEmbedding
from .frequency import LearnableFourierFilter
from .normalization import ChannelLayerNorm
from .resnet import TimeResBlock

__all__ = [
    "ChannelAttention",
    "SpatialAttention",
    "LinearCrossAttention",
    "SoftmaxCrossAttention",
    "ContrastEnhancementModule",
    "ConditionalCrossAttentionModule",
    "TimestepEmbedding",
    "LearnableFourierFilter",
    "ChannelLayerNorm",
    "TimeResBlock",
]
from .bffm import ADRB, BFFM, CGR, boundary_edges

__all__ += ["boundary_edges", "BFFM", "CGR", "ADRB"]
