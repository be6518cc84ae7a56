"""Mitochondria signature library for NeuroDiff's biology-guided mask remodeling (REFERENCE.md section 3, step 3)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from monai.utils import optional_import

from ...utils import atomic_write

ndimage, _has_scipy = optional_import("scipy.ndimage")
measure, _has_skimage = optional_import("skimage.measure")
draw, _ = optional_import("skimage.draw")

__all__ = ["MitochondriaLibrary"]

logger = logging.getLogger(__name__)

_NPZ_KEYS = ("points", "offsets", "orientations", "major_axis_lengths", "min_area", "tolerance")


class MitochondriaLibrary:
    """Simplified 2D mitochondrion contours with their orientation and major-axis length.

    Liu et al. "Diffusion-based data augmentation for neuron segmentation" (NeuroDiff), code
    https://github.com/HeadLiuYun/NeuroDiff (``tools/mask_remodeling.py``): every 2D connected component (4-connected)
    of a real mitochondria mask, slice by slice, with area ``>= min_area`` and whose outer contour keeps more than
    ``border_margin`` px from the image edge, gives one template: its longest iso-contour at level 0.5 (the outline,
    holes ignored) simplified by Ramer-Douglas-Peucker with ``tolerance`` px, plus the orientation and major-axis
    length of the component's second-moment ellipse. Built once (:meth:`from_volumes`), saved and reloaded as ``.npz``.

    Angles follow ``skimage.measure.regionprops``: ``orientation`` (degrees) is the angle between the row axis and the
    major axis, counter-clockwise, in [-90, 90]; the major-axis direction in (row, col) is ``(cos, sin)``.

    Args:
        contours: templates, each an ``(N, 2)`` float array of (row, col) contour points.
        orientations: one orientation per template, degrees (regionprops convention above).
        major_axis_lengths: one major-axis length per template, px.
        min_area: the area threshold the library was built with (kept for the record); default 100.
        tolerance: the simplification tolerance the library was built with; default 2.0.

    Example::

        library = MitochondriaLibrary.from_volumes([mito_zyx])  # binary (Z, Y, X) masks
        library.save("mito_library.npz")
        library = MitochondriaLibrary.load("mito_library.npz")
    """

    def __init__(
        self,
        contours: Sequence[np.ndarray] = (),
        orientations: Sequence[float] = (),
        major_axis_lengths: Sequence[float] = (),
        min_area: int = 100,
        tolerance: float = 2.0,
    ) -> None:
        if not len(contours) == len(orientations) == len(major_axis_lengths):
            raise ValueError(
                "MitochondriaLibrary: contours, orientations and major_axis_lengths need the same length, got "
                f"{len(contours)}, {len(orientations)}, {len(major_axis_lengths)}."
            )
        self.contours = [np.asarray(c, dtype=np.float64).reshape(-1, 2) for c in contours]
        if any(len(c) < 3 for c in self.contours):
            raise ValueError("MitochondriaLibrary: every contour needs at least 3 points.")
        self.orientations = np.asarray(orientations, dtype=np.float64).reshape(-1)
        self.major_axis_lengths = np.asarray(major_axis_lengths, dtype=np.float64).reshape(-1)
        self.min_area, self.tolerance = int(min_area), float(tolerance)

    def __len__(self) -> int:
        return len(self.contours)

    @classmethod
    def from_volumes(
        cls,
        volumes: Iterable[np.ndarray],
        min_area: int = 100,
        tolerance: float = 2.0,
        border_margin: float = 1.0,
    ) -> MitochondriaLibrary:
        """Build a library from mitochondria masks.

        Args:
            volumes: masks ``(Z, Y, X)`` or ``(Y, X)`` (numpy or torch; any value > 0 is mitochondrion). A
                channel-first ``(1, Z, Y, X)`` mask is accepted too.
            min_area: smallest component area kept, px; default 100.
            tolerance: Ramer-Douglas-Peucker tolerance, px; default 2.0 (0 keeps the contour as is).
            border_margin: a component is skipped when a contour point lies within this distance of the image edge
                (``<= margin`` or ``>= size - 1 - margin``); default 1.0 (reference).

        Returns:
            the library (possibly empty; a warning is logged then).
        """
        if min_area < 1:
            raise ValueError(f"MitochondriaLibrary.from_volumes: min_area must be >= 1, got {min_area}.")
        if tolerance < 0:
            raise ValueError(f"MitochondriaLibrary.from_volumes: tolerance must be >= 0, got {tolerance}.")
        contours, orientations, lengths = [], [], []
        for index, volume in enumerate(volumes):
            vol = np.asarray(volume.detach().cpu() if hasattr(volume, "detach") else volume)
            if vol.ndim == 4 and vol.shape[0] == 1:
                vol = vol[0]
            if vol.ndim == 2:
                vol = vol[None]
            if vol.ndim != 3:
                raise ValueError(
                    f"MitochondriaLibrary.from_volumes: volume {index} must be (Z, Y, X) or (Y, X), got {vol.shape}."
                )
            for plane in vol:
                for contour, orientation, length in _slice_templates(plane > 0, min_area, tolerance, border_margin):
                    contours.append(contour)
                    orientations.append(orientation)
                    lengths.append(length)
        if not contours:
            logger.warning("MitochondriaLibrary: no component passed the filters (min_area=%d).", min_area)
        return cls(contours, orientations, lengths, min_area=min_area, tolerance=tolerance)

    def draw(
        self, index: int, shape: tuple[int, int], center: Sequence[float], rotation_deg: float
    ) -> np.ndarray:
        """Rasterise template ``index``: point mean moved to ``center``, rotated by ``rotation_deg`` about it, filled.

        The rotation is counter-clockwise in the regionprops sense: a template of orientation ``a`` drawn with rotation
        ``b - a`` has orientation ``b``. Points are rounded to pixels and clipped to the image, as in the reference.

        Args:
            index: the template, ``0 <= index < len(self)``.
            shape: (Y, X) of the slice drawn into.
            center: (row, col) where the template's point mean lands.
            rotation_deg: counter-clockwise rotation, degrees.

        Returns:
            boolean mask of ``shape``.
        """
        if not 0 <= index < len(self.contours):
            raise IndexError(f"MitochondriaLibrary.draw: template {index} out of range (library of {len(self)}).")
        contour = self.contours[index]
        phi = np.deg2rad(rotation_deg)
        rot = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
        center = np.asarray(center, dtype=np.float64)
        points = (contour - contour.mean(axis=0)) @ rot.T + center
        points = np.round(points)
        points[:, 0] = np.clip(points[:, 0], 0, shape[0] - 1)
        points[:, 1] = np.clip(points[:, 1], 0, shape[1] - 1)
        rr, cc = draw.polygon(points[:, 0], points[:, 1], shape=shape)
        out = np.zeros(shape, dtype=bool)
        out[rr, cc] = True
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the library as ``.npz`` (points concatenated, with per-template offsets), atomically.

        As with ``np.savez``, ``.npz`` is appended to a ``path`` without it.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        offsets = np.cumsum([0] + [len(c) for c in self.contours]).astype(np.int64)
        points = np.concatenate(self.contours) if self.contours else np.zeros((0, 2))
        with atomic_write(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                points=points.astype(np.float64),
                offsets=offsets,
                orientations=self.orientations,
                major_axis_lengths=self.major_axis_lengths,
                min_area=np.int64(self.min_area),
                tolerance=np.float64(self.tolerance),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> MitochondriaLibrary:
        """Read a library written by :meth:`save`; a missing or malformed file raises ``ValueError`` naming it."""
        if not os.path.isfile(path):
            raise ValueError(f"MitochondriaLibrary.load: file {str(path)!r} not found.")
        try:
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in _NPZ_KEYS if k in f.files}
        except (OSError, EOFError, ValueError, AttributeError) as err:  # not an npz, truncated, or a pickle
            raise ValueError(f"MitochondriaLibrary.load: cannot read {str(path)!r}: {err}") from err
        missing = [k for k in _NPZ_KEYS if k not in data]
        if missing:
            raise ValueError(f"MitochondriaLibrary.load: {str(path)!r} lacks {missing}.")
        offsets = data["offsets"]
        if offsets.ndim != 1 or len(offsets) != len(data["orientations"]) + 1 or offsets[-1] != len(data["points"]):
            raise ValueError(f"MitochondriaLibrary.load: inconsistent offsets in {str(path)!r}.")
        contours = [data["points"][a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        return cls(
            contours, data["orientations"], data["major_axis_lengths"], int(data["min_area"]), float(data["tolerance"])
        )


def _slice_templates(mask: np.ndarray, min_area: int, tolerance: float, border_margin: float):
    """Yield ``(contour, orientation_deg, major_axis_length)`` for the qualifying components of one 2D mask."""
    labeled, count = ndimage.label(mask)
    if count == 0:
        return
    height, width = mask.shape
    for region in measure.regionprops(labeled):
        if region.area < min_area:
            continue
        # Contours of a crop one pixel wider than the component equal those of the full image: the 0.5 level only
        # sees this component's pixels and the zeros around them.
        r0, c0, r1, c1 = region.bbox
        r0, c0, r1, c1 = max(r0 - 1, 0), max(c0 - 1, 0), min(r1 + 1, height), min(c1 + 1, width)
        sub = labeled[r0:r1, c0:c1] == region.label
        found = measure.find_contours(sub.astype(np.float64), 0.5)
        if not found:
            continue
        contour = max(found, key=len) + np.array([r0, c0], dtype=np.float64)
        rows, cols = contour[:, 0], contour[:, 1]
        if np.any((rows <= border_margin) | (rows >= height - 1 - border_margin)) or np.any(
            (cols <= border_margin) | (cols >= width - 1 - border_margin)
        ):
            continue
        # Douglas-Peucker on the closed polyline (first point == last point stays fixed), as shapely's simplify does.
        simplified = measure.approximate_polygon(contour, tolerance) if tolerance > 0 else contour
        if len(simplified) < 4:  # 3 distinct corners + the repeated first point: anything less is no polygon
            continue
        yield simplified, float(np.rad2deg(region.orientation)), float(region.axis_major_length)
