"""A PNG a person can look at: rows of image | truth | prediction (| more panels), with titles."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from monai.utils import optional_import

from ..utils import atomic_write

cv2, _has_cv2 = optional_import("cv2")

__all__ = ["label_to_rgb", "instances_to_rgb", "save_panel_figure"]

# distinct colours for classes 1.. (background stays black); RGB
_PALETTE = np.array(
    [
        [0, 0, 0],
        [255, 215, 0],
        [0, 200, 255],
        [255, 80, 80],
        [120, 255, 120],
        [200, 120, 255],
        [255, 160, 60],
        [255, 255, 255],
        [90, 90, 255],
        [0, 160, 120],
    ],
    dtype=np.uint8,
)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    low, high = np.percentile(image, [0.5, 99.5]) if image.size else (0.0, 1.0)
    scaled = np.clip((image - low) / max(high - low, 1e-8), 0, 1)
    return (scaled * 255).astype(np.uint8)


def label_to_rgb(label: np.ndarray) -> np.ndarray:
    """Integer label map ``(H, W)`` -> ``(H, W, 3)`` uint8 with one colour per class (background black)."""
    label = np.asarray(label).astype(np.int64)
    return _PALETTE[np.mod(label, len(_PALETTE))]


def instances_to_rgb(label: np.ndarray) -> np.ndarray:
    """Instance label map ``(H, W)`` -> ``(H, W, 3)`` uint8, a random bright colour per id (0 stays black).

    An id's colour depends on the id alone (a hash of it), so the same neuron keeps its colour across sections and
    figures, and neighbouring ids (1, 2, 3 ...) get unrelated colours.
    """
    label = np.asarray(label).astype(np.uint64)
    ids, inverse = np.unique(label, return_inverse=True)
    # splitmix64-style mixing of the id: deterministic, well spread
    z = ids + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    colours = np.stack([(z >> np.uint64(s)) & np.uint64(255) for s in (0, 8, 16)], axis=-1).astype(np.uint8)
    colours = np.maximum(colours, 48)  # no near-black neuron
    colours[ids == 0] = 0
    return colours[inverse.reshape(label.shape)]


def save_panel_figure(
    path: str | os.PathLike,
    rows: Sequence[Sequence[np.ndarray]],
    titles: Sequence[str],
    kinds: Sequence[str],
    max_side: int = 384,
) -> str:
    """Write a grid: one row per sample, one column per panel, a title bar on top.

    Args:
        path: output PNG.
        rows: per sample, one 2D array per panel.
        titles: panel titles (one per column).
        kinds: per column ``"image"`` (grey, percentile-scaled), ``"label"`` (class colours), ``"instances"``
            (a random colour per id, :func:`instances_to_rgb`) or ``"map"`` (continuous, grey).
        max_side: panels are shrunk so their longer side is at most this many pixels.

    Returns:
        the written path.
    """
    if not _has_cv2:
        raise ImportError("save_panel_figure needs opencv-python-headless.")
    if not rows or any(len(r) != len(titles) for r in rows) or len(kinds) != len(titles):
        raise ValueError("save_panel_figure: every row needs one panel per title and per kind.")
    rendered_rows = []
    for row in rows:
        panels = []
        for panel, kind in zip(row, kinds):
            panel = np.asarray(panel)
            if kind == "label":
                rgb = label_to_rgb(panel)
            elif kind == "instances":
                rgb = instances_to_rgb(panel)
            else:
                rgb = np.repeat(_to_uint8(panel)[..., None], 3, axis=-1)
            scale = min(1.0, max_side / max(rgb.shape[:2]))
            if scale < 1.0:
                size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
                rgb = cv2.resize(
                    rgb, size, interpolation=cv2.INTER_NEAREST if kind in ("label", "instances") else cv2.INTER_AREA
                )
            panels.append(rgb)
        height = max(p.shape[0] for p in panels)
        padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0)), constant_values=255) for p in panels]
        rendered_rows.append(np.concatenate(padded, axis=1))
    width = max(r.shape[1] for r in rendered_rows)
    rendered_rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rendered_rows]
    column_width = rendered_rows[0].shape[1] // len(titles)
    header = np.full((28, width, 3), 255, dtype=np.uint8)
    for i, title in enumerate(titles):
        cv2.putText(header, title, (i * column_width + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    figure = np.concatenate([header, *rendered_rows], axis=0)
    with atomic_write(path) as tmp:
        if not cv2.imwrite(str(tmp), figure[..., ::-1]):
            raise OSError(f"save_panel_figure: could not write {path}.")
    return str(path)
