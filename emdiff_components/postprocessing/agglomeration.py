"""Affinities -> neuron instances: waterz, multicut and mutex-watershed agglomeration of supervoxels.

NeuroDiff (Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation", ISBI 2026,
https://arxiv.org/abs/2601.15779) reports VI and ARAND after two post-processings of the predicted affinities, both on
the fragments of :func:`~emdiff_components.postprocessing.affinity_supervoxels`: waterz agglomeration (threshold 0.30,
50 % histogram-quantile scoring) and a multicut solved with Kernighan-Lin (boundary bias 0.25). The recipes follow the
public ``segmentation_scripts/evaluate.py`` (``post_waterz``, ``post_lmc``); the solvers are the libraries' own
(waterz, python-elf, mwatershed), nothing is re-implemented here. Mutex watershed is an extra choice.

Affinity channel order everywhere: ``[[-1, 0, 0], [0, -1, 0], [0, 0, -1]]`` (z, y, x to the previous voxel, as
``seg_to_affgraph(mknhood3d(1))`` of the public code, waterz's convention and our :class:`LabelToAffinity`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.utils import optional_import

from .watershed import affinity_supervoxels, boundary_map, check_affinities, relabel_consecutive, require

waterz, has_waterz = optional_import("waterz")
mwatershed, has_mwatershed = optional_import("mwatershed")
elf_features, has_elf_features = optional_import("elf.segmentation.features")
elf_multicut, has_elf_multicut = optional_import("elf.segmentation.multicut")

__all__ = [
    "NEAREST_NEIGHBOUR_OFFSETS",
    "WATERZ_SCORING",
    "agglomerate_multicut",
    "agglomerate_waterz",
    "mutex_watershed",
    "segment_affinities",
]

# Edge score of the public evaluate.py (post_waterz): one minus the median (50 % quantile of a 256-bin histogram) of the
# affinities on the boundary between two regions; merging stops when the lowest score exceeds the threshold.
WATERZ_SCORING = "OneMinus<HistogramQuantileAffinity<RegionGraphType,50,ScoreValue,256>>"

# Offsets of the three affinity channels (see the module docstring).
NEAREST_NEIGHBOUR_OFFSETS = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))

MULTICUT_SOLVERS = {
    "kernighan-lin": "multicut_kernighan_lin",
    "greedy-additive": "multicut_gaec",
    "greedy-fixation": "multicut_greedy_fixation",
}


def _check_fragments(fragments: Any, shape: tuple[int, ...], caller: str) -> np.ndarray:
    """``uint64`` copy of non-negative integer fragments of spatial shape ``shape``."""
    if isinstance(fragments, torch.Tensor):
        fragments = fragments.detach().cpu().numpy()
    f = np.asarray(fragments)
    if f.shape != tuple(shape):
        raise ValueError(f"{caller}: fragments of shape {f.shape} do not match the affinities' spatial shape {shape}.")
    if not (np.issubdtype(f.dtype, np.integer) or f.dtype == np.bool_):
        raise ValueError(f"{caller}: fragments must be integer labels, got dtype {f.dtype}.")
    if f.size and f.min() < 0:
        raise ValueError(f"{caller}: fragment ids must be >= 0, got {f.min()}.")
    return np.ascontiguousarray(f.astype(np.uint64))


def agglomerate_waterz(
    affinities: np.ndarray | torch.Tensor,
    fragments: np.ndarray | torch.Tensor,
    threshold: float = 0.3,
    scoring: str = WATERZ_SCORING,
    discretize_queue: int = 256,
) -> np.ndarray:
    """Hierarchical agglomeration of fragments with waterz (Funke et al.), NeuroDiff's main post-processing.

    NeuroDiff (Jiang et al., https://arxiv.org/abs/2601.15779), as the public ``evaluate.py`` (``post_waterz``):
    region pairs are merged in order of their score, ``1 -`` the median affinity on their shared boundary
    (:data:`WATERZ_SCORING`), with a 256-bin queue, until the lowest score is above ``threshold``.

    Args:
        affinities: ``(3, Z, Y, X)`` affinities in ``[0, 1]``, channel order of the module docstring.
        fragments: ``(Z, Y, X)`` integer supervoxels (e.g. :func:`affinity_supervoxels`); 0 is background that waterz
            never merges.
        threshold: merge while the best score is at most this (0.3). 1.0 merges every touching pair.
        scoring: waterz's C++ scoring-function type (default :data:`WATERZ_SCORING`, precompiled in the waterz wheel;
            any other string is compiled on first use, which needs a C++ compiler and boost).
        discretize_queue: bins of the merge queue (256, the paper's; 0 for an exact priority queue).

    Returns:
        ``(Z, Y, X)`` ``uint64`` segments numbered ``1 .. N`` (0 only where ``fragments`` is 0).

    Raises:
        ValueError: bad affinities (see :func:`affinity_supervoxels`) or fragments of another shape.
        OptionalImportError: waterz is not installed.
    """
    affs = check_affinities(affinities, "agglomerate_waterz")
    frags = _check_fragments(fragments, affs.shape[1:], "agglomerate_waterz")
    require(has_waterz, "waterz", "agglomerate_waterz")
    # waterz writes into the fragments it gets; ours are a private copy already
    segmentations = waterz.agglomerate(
        affs,
        [float(threshold)],
        fragments=frags,
        scoring_function=scoring,
        discretize_queue=int(discretize_queue),
        return_merge_history=False,
    )
    return relabel_consecutive(next(iter(segmentations)))


def agglomerate_multicut(
    affinities: np.ndarray | torch.Tensor,
    fragments: np.ndarray | torch.Tensor,
    beta: float = 0.25,
    solver: str = "kernighan-lin",
    n_threads: int | None = None,
) -> np.ndarray:
    """Multicut of the fragments' region adjacency graph, edge costs from the affinities (elf, no nifty needed).

    NeuroDiff (Jiang et al., https://arxiv.org/abs/2601.15779), as the public ``evaluate.py`` (``post_lmc``): the
    boundary probability of an edge is the mean of ``1 - affinity`` over the voxel pairs that cross it (all three
    directions); it becomes the cost ``log((1 - p) / p) + log((1 - beta) / beta)`` (p clipped to [0.001, 0.999]),
    weighted by the edge's size relative to the largest edge (elf's ``transform_probabilities_to_costs``; positive
    costs join). ``beta`` below 0.5 favours merging.

    Args:
        affinities: ``(3, Z, Y, X)`` affinities in ``[0, 1]``, channel order of the module docstring.
        fragments: ``(Z, Y, X)`` integer supervoxels (e.g. :func:`affinity_supervoxels`).
        beta: boundary bias in ``(0, 1)`` (0.25, the paper's).
        solver: ``"kernighan-lin"`` (the paper's; warm-started from greedy additive, elf's default),
            ``"greedy-additive"`` or ``"greedy-fixation"``.
        n_threads: threads for graph and features (default: all CPU cores).

    Returns:
        ``(Z, Y, X)`` ``uint64`` segments numbered ``1 .. N`` (0 only where ``fragments`` is 0).

    Raises:
        ValueError: bad affinities or fragments, ``beta`` outside ``(0, 1)``, unknown ``solver``.
        OptionalImportError: python-elf is not installed.
    """
    affs = check_affinities(affinities, "agglomerate_multicut")
    frags = _check_fragments(fragments, affs.shape[1:], "agglomerate_multicut")
    if not 0.0 < beta < 1.0:
        raise ValueError(f"agglomerate_multicut: beta must be in (0, 1), got {beta}.")
    if solver not in MULTICUT_SOLVERS:
        raise ValueError(f"agglomerate_multicut: solver must be one of {sorted(MULTICUT_SOLVERS)}, got {solver!r}.")
    require(has_elf_features and has_elf_multicut, "python-elf", "agglomerate_multicut")
    rag = elf_features.compute_rag(frags, n_threads=n_threads)
    if rag.number_of_edges == 0:  # one fragment (or none): nothing to cut
        return relabel_consecutive(frags)
    offsets = [list(o) for o in NEAREST_NEIGHBOUR_OFFSETS]
    probs = elf_features.compute_affinity_features(rag, frags, 1.0 - affs, offsets, n_threads=n_threads)[:, 0]
    sizes = elf_features.compute_boundary_mean_and_length(rag, frags, boundary_map(affs), n_threads=n_threads)[:, 1]
    costs = elf_multicut.transform_probabilities_to_costs(probs, beta=beta, edge_sizes=sizes)
    node_labels = getattr(elf_multicut, MULTICUT_SOLVERS[solver])(rag, costs)
    segments = elf_features.project_node_labels_to_pixels(rag, frags, np.asarray(node_labels), n_threads=n_threads)
    segments = np.where(frags == 0, 0, np.asarray(segments, dtype=np.uint64) + 1)  # node label 0 is a segment too
    return relabel_consecutive(segments)


def _mutex_offsets(num_channels: int, offsets: Sequence[Sequence[int]] | None) -> list[list[int]]:
    if offsets is None:
        if num_channels != 3:
            raise ValueError(
                f"mutex_watershed: {num_channels} affinity channels need explicit offsets (one per channel); "
                "the default covers only the 3 nearest-neighbour channels."
            )
        offsets = NEAREST_NEIGHBOUR_OFFSETS
    offsets = [[int(v) for v in o] for o in offsets]
    if len(offsets) != num_channels or any(len(o) != 3 for o in offsets):
        raise ValueError(
            f"mutex_watershed: need one 3D offset per affinity channel, got {len(offsets)} offsets for "
            f"{num_channels} channels: {offsets}."
        )
    return offsets


def _mutex_bias(bias: float | Sequence[float], num_channels: int) -> np.ndarray:
    """One bias per channel: a scalar for all of them, or one value each."""
    values = np.asarray(bias, dtype=np.float64).ravel()
    if values.size == 1:
        return np.full(num_channels, values[0])
    if values.size != num_channels:
        raise ValueError(f"mutex_watershed: {values.size} bias values for {num_channels} affinity channels.")
    return values


def mutex_watershed(
    affinities: np.ndarray | torch.Tensor,
    offsets: Sequence[Sequence[int]] | None = None,
    bias: float | Sequence[float] = 0.5,
    fragments: np.ndarray | torch.Tensor | None = None,
    strides: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Mutex watershed (Wolf et al. "The Mutex Watershed", ECCV 2018) with mwatershed, on voxels or on fragments.

    Not part of NeuroDiff's evaluation (https://arxiv.org/abs/2601.15779 reports waterz and multicut); offered beside
    them because it needs no threshold tuning once long-range affinities are predicted. Every edge gets the weight
    ``affinity - bias``: positive edges join, negative ones forbid a join, processed greedily by decreasing magnitude.

    Default for the 3 nearest-neighbour channels of NeuroDiff's network (no long-range affinities): offsets
    :data:`NEAREST_NEIGHBOUR_OFFSETS` and bias 0.5, so that a pair joins when its affinity is above 0.5 unless a
    stronger repulsion between the two growing regions was seen first; without long-range repulsion this is close to
    connected components of the affinity graph thresholded at 0.5, so a single leaking voxel pair can merge two
    neurons. With more channels pass their ``offsets`` (the first three nearest-neighbour ones) and usually one bias
    per channel, higher for the long-range ones so that they mostly repel (as in Wolf et al.).

    With ``fragments`` the supervoxels are the nodes instead of voxels: each pair of touching fragments gets the mean
    of ``affinity - bias`` over all voxel pairs, of any channel, that link them (elf's ``compute_affinity_features``;
    fragments that only long-range offsets link are not paired), and mwatershed's ``cluster_edges`` joins them.

    Args:
        affinities: ``(C, Z, Y, X)`` affinities in ``[0, 1]``, ``C >= 3``.
        offsets: one ``(dz, dy, dx)`` per channel; the affinity at ``p`` links ``p`` and ``p + offset``. Default
            :data:`NEAREST_NEIGHBOUR_OFFSETS` (only for 3 channels).
        bias: subtracted from the affinities (one value for all channels, or one per channel), default 0.5.
        fragments: ``(Z, Y, X)`` supervoxels to agglomerate; default ``None`` (voxel-level mutex watershed).
        strides: voxel level only: mwatershed's per-channel strides, subsampling long-range edges (default none).

    Returns:
        ``(Z, Y, X)`` ``uint64`` segments numbered ``1 .. N`` (0 only where ``fragments`` is 0).

    Raises:
        ValueError: bad affinities, offsets, bias or fragments; ``strides`` together with ``fragments``.
        OptionalImportError: mwatershed (or, with fragments, python-elf) is not installed.
    """
    affs = check_affinities(affinities, "mutex_watershed", channels=None)
    offs = _mutex_offsets(affs.shape[0], offsets)
    biases = _mutex_bias(bias, affs.shape[0])
    require(has_mwatershed, "mwatershed", "mutex_watershed")
    weights = affs.astype(np.float64) - biases[:, None, None, None]  # mwatershed needs float64
    if fragments is None:
        strides_ = None if strides is None else [[int(v) for v in s] for s in strides]
        return relabel_consecutive(mwatershed.agglom(np.ascontiguousarray(weights), offs, strides=strides_))
    if strides is not None:
        raise ValueError("mutex_watershed: strides apply to the voxel-level mutex watershed, not with fragments.")
    frags = _check_fragments(fragments, affs.shape[1:], "mutex_watershed")
    require(has_elf_features, "python-elf", "mutex_watershed")
    rag = elf_features.compute_rag(frags)
    if rag.number_of_edges == 0:
        return relabel_consecutive(frags)
    uv = np.asarray(rag.uv_ids(), dtype=np.int64)
    # one weight per pair of touching fragments: the mean of (affinity - bias) over every voxel pair, of any channel,
    # that links them, so long-range repulsion and short-range attraction vote together
    means = elf_features.compute_affinity_features(rag, frags, weights.astype(np.float32), offs)[:, 0]
    edges = [(float(w), int(u), int(v)) for w, (u, v) in zip(means, uv) if w != 0.0]
    clusters = dict(mwatershed.cluster_edges(edges)) if edges else {}
    # a cluster is named by one of its fragments; name it by its smallest member, so that no two clusters share a name
    nodes = range(rag.number_of_nodes)
    smallest: dict[int, int] = {}
    for node in nodes:
        smallest.setdefault(clusters.get(node, node), node)
    lookup = np.array([smallest[clusters.get(node, node)] for node in nodes], dtype=np.uint64)
    segments = np.where(frags == 0, 0, lookup[frags] + 1)
    return relabel_consecutive(segments)


METHODS = ("waterz", "multicut", "mutex")


def segment_affinities(
    affinities: np.ndarray | torch.Tensor,
    method: str = "waterz",
    watershed_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Neuron instances from predicted affinities: supervoxels, then the chosen agglomeration.

    NeuroDiff (Jiang et al., https://arxiv.org/abs/2601.15779) post-processing in one call, as the public
    ``evaluate.py``: :func:`affinity_supervoxels` (2D distance-transform watershed, threshold 0.25, seed sigma 2.0)
    then :func:`agglomerate_waterz` (threshold 0.30), :func:`agglomerate_multicut` (Kernighan-Lin, beta 0.25) or
    :func:`mutex_watershed` on the fragments.

    Args:
        affinities: ``(3, Z, Y, X)`` affinities in ``[0, 1]`` (``mutex``: ``(C, Z, Y, X)`` with the 3
            nearest-neighbour channels first and ``offsets`` in ``kwargs``; the supervoxels use those first three).
        method: ``"waterz"`` (default), ``"multicut"`` or ``"mutex"``.
        watershed_kwargs: keyword arguments of :func:`affinity_supervoxels` (e.g. ``{"threshold": 0.25}``).
        kwargs: keyword arguments of the agglomeration (e.g. ``threshold=0.3`` for waterz, ``beta`` for multicut,
            ``bias`` / ``offsets`` for mutex).

    Returns:
        ``(Z, Y, X)`` ``uint64`` instance labels numbered ``1 .. N`` (the supervoxels cover every voxel, so no 0).

    Raises:
        ValueError: unknown ``method`` (the message lists the choices) or bad affinities.
        OptionalImportError: the method's package is not installed.

    Example:
        >>> affs = np.ones((3, 4, 32, 32), dtype=np.float32); affs[2, ..., 16] = 0  # two touching boxes
        >>> np.unique(segment_affinities(affs, method="multicut")).tolist()
        [1, 2]
    """
    if method not in METHODS:
        raise ValueError(f"segment_affinities: method must be one of {list(METHODS)}, got {method!r}.")
    caller = f"segment_affinities(method={method!r})"
    affs = check_affinities(affinities, caller, channels=None if method == "mutex" else 3)
    fragments = affinity_supervoxels(affs[:3], **dict(watershed_kwargs or {}))
    if method == "waterz":
        return agglomerate_waterz(affs, fragments, **kwargs)
    if method == "multicut":
        return agglomerate_multicut(affs, fragments, **kwargs)
    return mutex_watershed(affs, fragments=fragments, **kwargs)
