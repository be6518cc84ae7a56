"""Stage 2 of the cell cascade: closed 3D cell shapes (meshes) -> stacks of 2D masks, and a default 2D -> 3D lift.

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515: a 2D mask becomes a 3D surface (SyncDreamer + NeuS in the paper), which is cut into
z-sections that later stages texture. :class:`MeshToMaskStack` is the pluggable slicer (any closed mesh file in);
:class:`LiftMask3D` is the built-in lift that needs no pretrained model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, optional_import
from monai.utils.type_conversion import convert_to_dst_type
from scipy import ndimage
from skimage.measure import marching_cubes

trimesh, has_trimesh = optional_import("trimesh")

__all__ = ["LiftMask3D", "MeshToMaskStack"]

MESH_EXTENSIONS = (".ply", ".obj", ".stl", ".off")
PLACEMENTS = ("min", "center", "absolute")
PROFILES = ("ellipsoid", "cone")
TIE = 1e-4  # pixels: a border distance equal to a section's threshold counts as outside, also in float32 meshes


def _check_levels(owner: str, num_slices: int, z_range: Sequence[float]) -> tuple[float, float]:
    if isinstance(num_slices, bool) or not isinstance(num_slices, int) or num_slices < 1:
        raise ValueError(f"{owner}: num_slices must be an int >= 1, got {num_slices!r}.")
    if len(z_range) != 2 or not 0.0 <= z_range[0] <= z_range[1] <= 1.0:
        raise ValueError(f"{owner}: z_range must be (low, high) with 0 <= low <= high <= 1, got {z_range!r}.")
    return float(z_range[0]), float(z_range[1])


def _require_trimesh(owner: str) -> None:
    if not has_trimesh:
        raise ImportError(f"{owner} reads and writes mesh files with trimesh: `pip install trimesh`.")


def _load_mesh(source: object) -> tuple[np.ndarray, np.ndarray, str]:
    """Vertices ``(V, 3)`` float64, faces ``(F, 3)`` int64 and a name for messages; duplicate vertices merged."""
    _require_trimesh("MeshToMaskStack")
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if not name.lower().endswith(MESH_EXTENSIONS):
            raise ValueError(
                f"MeshToMaskStack: unknown mesh format of '{name}'; supported extensions: {', '.join(MESH_EXTENSIONS)}."
            )
        if not os.path.isfile(name):
            raise FileNotFoundError(f"MeshToMaskStack: mesh file '{name}' does not exist.")
        try:
            mesh = trimesh.load(name, force="mesh", process=True)
        except Exception as error:  # trimesh raises many types on corrupt files; report them with the file name
            raise ValueError(f"MeshToMaskStack: cannot read mesh file '{name}': {error}") from error
    elif isinstance(source, trimesh.Trimesh):
        name, mesh = "the given trimesh.Trimesh", source.copy()
        mesh.merge_vertices()
    elif isinstance(source, (tuple, list)) and len(source) == 2:
        name = "the given (vertices, faces)"
        vertices, faces = np.asarray(source[0], dtype=np.float64), np.asarray(source[1])
        if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(
                f"MeshToMaskStack: {name} must be shaped (V, 3) and (F, 3), got {vertices.shape} and {faces.shape}."
            )
        mesh = trimesh.Trimesh(vertices, faces.astype(np.int64), process=True)
    else:
        raise TypeError(
            "MeshToMaskStack: expected a mesh file path, a (vertices, faces) pair or a trimesh.Trimesh, "
            f"got {type(source).__name__}."
        )
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"MeshToMaskStack: {name} is empty (a mesh with triangle faces is needed, not only points).")
    if not np.all(np.isfinite(mesh.vertices)):
        raise ValueError(f"MeshToMaskStack: {name} has non-finite vertex coordinates.")
    if not mesh.is_watertight:
        raise ValueError(
            f"MeshToMaskStack: {name} is not closed (watertight): some edges do not have exactly two faces, so its "
            "sections are not closed contours and cannot be filled."
        )
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64), name


def _section(vertices: np.ndarray, faces: np.ndarray, level: float) -> np.ndarray:
    """Segments ``(S, 2, 2)`` (in-plane coordinates) where the plane ``z = level`` cuts the triangles.

    A vertex counts as above when ``z >= level`` (the plane moved down by an infinitesimal), so a vertex, an edge or a
    face lying in the plane is never ambiguous and every triangle with vertices on both sides gives exactly one
    segment. Each cut edge is interpolated from its lower-index end, so the two triangles sharing it get the same
    point and the contours of a closed mesh close exactly.
    """
    above = vertices[:, 2] >= level
    flags = above[faces]
    mixed = flags.any(axis=1) & ~flags.all(axis=1)
    tri = faces[mixed]
    if len(tri) == 0:
        return np.zeros((0, 2, 2))
    edges = np.sort(np.stack([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], axis=1), axis=2)  # (T, 3, 2)
    cut = above[edges[..., 0]] != above[edges[..., 1]]  # exactly two cut edges per mixed triangle
    a, b = vertices[edges[..., 0][cut]], vertices[edges[..., 1][cut]]
    t = (level - a[:, 2]) / (b[:, 2] - a[:, 2])
    points = a[:, :2] + t[:, None] * (b[:, :2] - a[:, :2])
    return points.reshape(-1, 2, 2)


def _fill_even_odd(segments: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside the closed contours made of ``segments`` (even-odd rule, holes kept).

    Segments are in pixel coordinates ``(row, col)``, pixel ``(i, j)`` centred at ``(i, j)``. A scanline through every
    row of pixel centres counts the contour crossings left of each centre; a segment covers the rows ``r`` with
    ``min(u0, u1) <= r < max(u0, u1)`` (half-open, so a contour vertex on a row is counted once).
    """
    height, width = shape
    counts = np.zeros((height, width + 1), dtype=np.int64)
    u0, v0, u1, v1 = segments[:, 0, 0], segments[:, 0, 1], segments[:, 1, 0], segments[:, 1, 1]
    first = np.clip(np.ceil(np.minimum(u0, u1)), 0, height).astype(np.int64)
    stop = np.clip(np.ceil(np.maximum(u0, u1)), 0, height).astype(np.int64)
    rows_per = np.maximum(stop - first, 0)
    if rows_per.sum() > 0:
        seg = np.repeat(np.arange(len(segments)), rows_per)
        rows = first[seg] + np.arange(len(seg)) - np.repeat(np.cumsum(rows_per) - rows_per, rows_per)
        v = v0[seg] + (rows - u0[seg]) * (v1[seg] - v0[seg]) / (u1[seg] - u0[seg])
        column = np.clip(np.floor(v) + 1, 0, width).astype(np.int64)  # first pixel centre right of the crossing
        counts += np.bincount(rows * (width + 1) + column, minlength=counts.size).reshape(counts.shape)
    return (np.cumsum(counts, axis=1)[:, :width] & 1).astype(bool)


class MeshToMaskStack(Transform):
    """Slice a closed 3D cell surface into a ``(Z, Y, X)`` stack of filled 2D masks.

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515. Stage 2 of the cascade cuts the NeuS surface into z-sections. As in the public
    ``utils/slice_mesh_to_2d.py``: the mesh is shifted so its minimum is 0, the sections lie at
    ``linspace(max_z / 2, max_z, 10)`` (the upper half, from the equator to the top), mesh x runs along the image rows
    and mesh y along the columns, 200 pixels per mesh unit with the minimum 20 pixels from the corner of a 256 x 256
    image. The public script draws the vertices within 0.1 (mesh units) of each level and fills their outer contour,
    so its section at ``z`` is the outline of the surface band ``|z' - z| < 0.1`` (for a sphere the disc at
    ``z - 0.1``), and it needs a mesh dense enough for those vertices to form a closed curve. By default
    (``band=0``) each plane here cuts the triangles exactly, and the section's closed contours are filled with the
    even-odd rule, so holes are kept unless ``fill="external"`` fills them like the public ``cv2.RETR_EXTERNAL``.
    ``band=0.1, fill="external"`` gives the public behaviour: the union of the exact sections in the band. A mesh
    that leaves the grid is an error (the public script wraps it around through ``uint8``).

    Any mesh source plugs in here: NeuS / SyncDreamer output (``.ply``), :meth:`LiftMask3D.to_mesh`, or any closed
    ``.ply`` / ``.obj`` / ``.stl`` / ``.off`` surface.

    Args:
        size: output grid, ``int`` (square) or ``(Y, X)``; default 256 (public ``--output_size``).
        num_slices: number of sections; default 10 (public).
        z_range: ``(low, high)`` fractions of the mesh height where the first and last sections lie; default
            ``(0.5, 1.0)`` (public ``max_z / 2`` to ``max_z``). The top section of a smooth cell touches a single
            point and is (nearly) empty.
        scale: pixels per mesh unit; default 200.0 (public). ``None`` fits the larger in-plane extent into
            ``min(size) - 2 * margin`` pixels (not with ``placement="absolute"``).
        margin: pixel offset of the mesh minimum with ``placement="min"`` (public: 20), and the free border of a
            fitted scale; default 20.
        placement: ``"min"`` (public: the in-plane minimum at ``margin``; a point maps to the pixel
            ``floor(scale * (x - min)) + margin`` as in the public script), ``"center"`` (the in-plane bounding box
            centred in the grid) or ``"absolute"`` (pixel ``(i, j)`` is centred at mesh ``(x, y) = (i, j) / scale``;
            parts outside the grid are cropped); default ``"min"``.
        fill: ``"even_odd"`` (default) or ``"external"`` (holes of a section filled).
        band: half-thickness, in mesh units, of the slab around each level whose sections are united; default 0.0
            (exact plane sections); 0.1 with ``fill="external"`` is the public script's behaviour. The slab is
            sampled at a spacing of at most 1 / scale (one pixel).

    Returns:
        ``(num_slices, Y, X)`` uint8 array of 0 / 1; index 0 is the lowest section (the equator by default).

    Raises:
        ValueError: the mesh is empty, not closed, of an unknown format, unreadable, or does not fit the grid.
        FileNotFoundError: the mesh file does not exist.

    Example:
        >>> import trimesh
        >>> sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
        >>> MeshToMaskStack()((sphere.vertices, sphere.faces)).shape
        (10, 256, 256)
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.NUMPY]

    def __init__(
        self,
        size: int | Sequence[int] = 256,
        num_slices: int = 10,
        z_range: Sequence[float] = (0.5, 1.0),
        scale: float | None = 200.0,
        margin: int = 20,
        placement: str = "min",
        fill: str = "even_odd",
        band: float = 0.0,
    ) -> None:
        shape = (size, size) if isinstance(size, int) else tuple(size)
        if len(shape) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"MeshToMaskStack: size must be an int >= 1 or (Y, X), got {size!r}.")
        self.z_range = _check_levels("MeshToMaskStack", num_slices, z_range)
        if placement not in PLACEMENTS:
            raise ValueError(f"MeshToMaskStack: placement must be one of {PLACEMENTS}, got {placement!r}.")
        if scale is not None and not scale > 0:
            raise ValueError(f"MeshToMaskStack: scale must be > 0 or None, got {scale!r}.")
        if scale is None and placement == "absolute":
            raise ValueError("MeshToMaskStack: scale=None (fit) needs placement 'min' or 'center', not 'absolute'.")
        if margin < 0 or (placement != "absolute" and 2 * margin >= min(shape)):
            raise ValueError(f"MeshToMaskStack: margin must be in [0, min(size) / 2), got {margin!r}.")
        if fill not in ("even_odd", "external"):
            raise ValueError(f"MeshToMaskStack: fill must be 'even_odd' or 'external', got {fill!r}.")
        if not np.isfinite(band) or band < 0:
            raise ValueError(f"MeshToMaskStack: band must be a finite number >= 0, got {band!r}.")
        self.shape, self.num_slices, self.scale = shape, num_slices, scale
        self.margin, self.placement, self.fill, self.band = margin, placement, fill, float(band)

    def levels(self, z: np.ndarray) -> np.ndarray:
        """The section heights for vertex heights ``z``: ``min(z) + linspace(low * h, high * h, num_slices)``."""
        height = float(z.max() - z.min())
        return z.min() + np.linspace(self.z_range[0] * height, self.z_range[1] * height, self.num_slices)

    def _to_pixels(self, xy: np.ndarray, name: str) -> tuple[np.ndarray, float]:
        """Mesh ``(x, y)`` -> continuous pixel ``(row, col)`` (pixel ``(i, j)`` centred at ``(i, j)``) and the scale."""
        low, high = xy.min(axis=0), xy.max(axis=0)
        scale = self.scale
        if scale is None:
            extent = float((high - low).max())
            if extent <= 0:
                raise ValueError(f"MeshToMaskStack: {name} has no in-plane extent to fit.")
            scale = (min(self.shape) - 2 * self.margin) / extent
        if self.placement == "absolute":
            return scale * xy, scale
        if self.placement == "min":
            uv = scale * (xy - low) + self.margin - 0.5
        else:
            uv = scale * (xy - (low + high) / 2) + (np.asarray(self.shape) - 1) / 2
        span = uv.max(axis=0)
        if np.any(uv.min(axis=0) < -0.5 - 1e-9) or np.any(span > np.asarray(self.shape) - 0.5 + 1e-9):
            raise ValueError(
                f"MeshToMaskStack: {name} spans {np.ceil(scale * (high - low)).astype(int).tolist()} pixels at scale "
                f"{scale:g} with placement '{self.placement}' and margin {self.margin}, more than the {self.shape} grid;"
                " lower scale or use scale=None."
            )
        return uv, scale

    def __call__(self, mesh: object) -> np.ndarray:
        """Slice ``mesh``: a file path (``.ply`` / ``.obj`` / ``.stl`` / ``.off``), ``(vertices, faces)`` or a Trimesh."""
        vertices, faces, name = _load_mesh(mesh)
        z = vertices[:, 2]
        if not z.max() > z.min():
            raise ValueError(f"MeshToMaskStack: {name} is flat in z; there is nothing to slice.")
        uv, scale = self._to_pixels(vertices[:, :2], name)
        points = np.concatenate([uv, z[:, None]], axis=1)
        offsets = np.linspace(-self.band, self.band, int(np.ceil(2 * self.band * scale)) + 1) if self.band else [0.0]
        out = np.zeros((self.num_slices, *self.shape), dtype=np.uint8)
        for k, level in enumerate(self.levels(z)):
            inside = np.zeros(self.shape, dtype=bool)
            for sub in np.asarray(level) + offsets:
                if z.min() <= sub <= z.max():
                    inside |= _fill_even_odd(_section(points, faces, sub), self.shape)
            out[k] = ndimage.binary_fill_holes(inside) if self.fill == "external" else inside
        return out


class LiftMask3D(Transform):
    """Lift a 2D cell mask to a closed 3D cell and slice it like :class:`MeshToMaskStack` (no pretrained model).

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515 lift masks with SyncDreamer + NeuS, whose weights are not available here. This
    built-in default is a dome over the mask, mirrored below it: with ``s(p)`` the distance of pixel ``p`` to the mask
    border (Euclidean distance transform minus half a pixel, so the border between a mask pixel and a background
    pixel is at 0) and ``r_max = max s``, the section at relative height ``t`` in [0, 1] above the equator is::

        S(t) = {p : s(p) > r_max * g(t) + 1e-4},   g(t) = 1 - sqrt(1 - t^2)  ("ellipsoid")  or  g(t) = t  ("cone")

    so the mask is the equator ``S(0)`` and the cell narrows by erosion to its ridge, touched at ``t = 1`` (``S(1)``
    is empty, as the tangent top section of a smooth mesh in the slicer); a disc of radius ``R`` becomes a sphere
    (``"ellipsoid"``, ``height_ratio=1``): ``S(t)`` is the disc of radius ``R * sqrt(1 - t^2)``. Pixels on a
    threshold (frequent on a pixel grid) are outside; the ``1e-4`` pixel keeps them outside after meshing too.
    The cell is ``{(p, z) : |z| <= H * tau(p)}`` with ``tau = g^-1(s / r_max)`` and half-height
    ``H = height_ratio * r_max`` pixels. The sections are taken at the relative heights ``f`` of
    ``linspace(z_range[0], z_range[1], num_slices)`` of the whole cell (``t = |2 f - 1|``), the levels of
    :class:`MeshToMaskStack`, so both paths give the same kind of stack; :meth:`to_mesh` writes the surface for that
    slicer (or a viewer). Deterministic.

    Args:
        num_slices: number of sections; default 10 (the slicer's).
        z_range: ``(low, high)`` fractions of the cell height; default ``(0.5, 1.0)`` (equator to top, the slicer's).
        profile: ``"ellipsoid"`` (default) or ``"cone"``, the ``g`` above.
        height_ratio: half-height over ``r_max`` for :meth:`volume` and :meth:`to_mesh` (the sections do not depend
            on it); default 1.0.

    Returns:
        uint8 0 / 1 stack ``(num_slices, Y, X)`` for a ``(Y, X)`` mask, ``(1, num_slices, Y, X)`` for ``(1, Y, X)``;
        a tensor for a tensor input.

    Example:
        >>> yy, xx = np.mgrid[:64, :64]
        >>> stack = LiftMask3D()(((yy - 32) ** 2 + (xx - 32) ** 2 <= 20**2).astype(np.uint8))
        >>> stack.shape, bool((stack.max(0) == stack[0]).all())
        ((10, 64, 64), True)
    """

    backend: ClassVar[list[TransformBackends]] = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        num_slices: int = 10,
        z_range: Sequence[float] = (0.5, 1.0),
        profile: str = "ellipsoid",
        height_ratio: float = 1.0,
    ) -> None:
        self.z_range = _check_levels("LiftMask3D", num_slices, z_range)
        if profile not in PROFILES:
            raise ValueError(f"LiftMask3D: profile must be one of {PROFILES}, got {profile!r}.")
        if not height_ratio > 0:
            raise ValueError(f"LiftMask3D: height_ratio must be > 0, got {height_ratio!r}.")
        self.num_slices, self.profile, self.height_ratio = num_slices, profile, float(height_ratio)

    def _mask(self, mask: NdarrayOrTensor) -> np.ndarray:
        array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 2:
            raise ValueError(f"LiftMask3D: expected a (Y, X) or (1, Y, X) mask, got shape {tuple(array.shape)}.")
        if not np.all(np.isfinite(array)):
            raise ValueError("LiftMask3D: the mask contains NaN or infinite values.")
        binary = array > 0
        if not binary.any():
            raise ValueError("LiftMask3D: the mask is empty; there is no cell to lift.")
        return binary

    def _g(self, t: np.ndarray) -> np.ndarray:
        t = np.clip(t, 0.0, 1.0)
        return 1.0 - np.sqrt(1.0 - t * t) if self.profile == "ellipsoid" else t

    @staticmethod
    def border_distance(mask: np.ndarray) -> np.ndarray:
        """Signed distance ``s`` of pixel centres to the border of ``mask`` (> 0 inside, < 0 outside), in pixels."""
        padded = np.pad(mask, 1)
        inside = ndimage.distance_transform_edt(padded) - 0.5
        outside = ndimage.distance_transform_edt(~padded) - 0.5
        return np.where(padded, inside, -outside)[1:-1, 1:-1]

    def __call__(self, mask: NdarrayOrTensor) -> NdarrayOrTensor:
        binary = self._mask(mask)
        s = self.border_distance(binary)
        r_max = s.max()
        t = np.abs(2.0 * np.linspace(*self.z_range, self.num_slices) - 1.0)
        stack = s[None] > r_max * self._g(t)[:, None, None] + TIE
        out = stack.astype(np.uint8)
        if np.ndim(mask) == 3:
            out = out[None]
        return convert_to_dst_type(out, mask, dtype=torch.uint8 if isinstance(mask, torch.Tensor) else np.uint8)[0]

    def _field(self, binary: np.ndarray, z_steps: int) -> tuple[np.ndarray, float]:
        """Field ``(2 z_steps + 3, Y + 2, X + 2)``, > 0 inside the cell, on planes ``z = j * H / z_steps``."""
        s = self.border_distance(np.pad(binary, 1))
        r_max = s.max()
        t = np.abs(np.arange(-z_steps - 1, z_steps + 2)) / z_steps
        # inside the dome s > r_max * g(t); above the top (t > 1) the field keeps falling, so the cell is closed
        threshold = r_max * np.where(t <= 1.0, self._g(t), 1.0 + (t - 1.0))
        return s[None] - threshold[:, None, None] - TIE, self.height_ratio * r_max / z_steps

    def volume(self, mask: NdarrayOrTensor, z_steps: int | None = None) -> np.ndarray:
        """The whole cell as a ``(2 * z_steps + 1, Y, X)`` uint8 volume on planes ``z = j * H / z_steps``.

        Args:
            mask: ``(Y, X)`` or ``(1, Y, X)`` binary mask.
            z_steps: planes from the equator to the top; default ``num_slices - 1`` (at least 1).
        """
        binary = self._mask(mask)
        z_steps = self._steps(z_steps)
        field, _ = self._field(binary, z_steps)
        return (field[1:-1, 1:-1, 1:-1] > 0).astype(np.uint8)

    def _steps(self, z_steps: int | None) -> int:
        z_steps = max(self.num_slices - 1, 1) if z_steps is None else z_steps
        if isinstance(z_steps, bool) or not isinstance(z_steps, int) or z_steps < 1:
            raise ValueError(f"LiftMask3D: z_steps must be an int >= 1, got {z_steps!r}.")
        return z_steps

    def to_mesh(
        self, mask: NdarrayOrTensor, path: str | os.PathLike | None = None, z_steps: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Closed surface of the lifted cell (scikit-image marching cubes of the field), optionally written to a file.

        Vertices are ``(x, y, z)`` = (row, column, height) in pixels, pixel ``(i, j)`` at ``(i, j)`` and the equator
        at ``z = 0``, so ``MeshToMaskStack(size=mask.shape, scale=1.0, placement="absolute")`` slices the file back
        into this transform's stack. With the default ``z_steps`` every default section lies on a sampling plane.

        Args:
            mask: ``(Y, X)`` or ``(1, Y, X)`` binary mask.
            path: optional ``.ply`` / ``.obj`` / ``.stl`` / ``.off`` file to write (needs trimesh).
            z_steps: sampling planes from the equator to the top; default ``num_slices - 1`` (at least 1).

        Returns:
            ``(vertices (V, 3) float64, faces (F, 3) int64)``, faces wound outwards.
        """
        if path is not None and not os.fspath(path).lower().endswith(MESH_EXTENSIONS):
            raise ValueError(f"LiftMask3D: unknown mesh format of '{os.fspath(path)}'; use one of {MESH_EXTENSIONS}.")
        binary = self._mask(mask)
        z_steps = self._steps(z_steps)
        field, dz = self._field(binary, z_steps)
        verts, faces, _, _ = marching_cubes(field, level=0.0, allow_degenerate=False)
        # (plane, row, col) indices -> (x = row, y = col, z): a cyclic axis permutation keeps the winding
        vertices = np.stack([verts[:, 1] - 1, verts[:, 2] - 1, (verts[:, 0] - z_steps - 1) * dz], axis=1)
        # marching cubes winds towards the larger values (inside); reverse so the normals point out of the cell
        vertices, faces = vertices.astype(np.float64), faces[:, ::-1].astype(np.int64)
        if path is not None:
            _require_trimesh("LiftMask3D.to_mesh")
            trimesh.Trimesh(vertices, faces, process=False).export(os.fspath(path))
        return vertices, faces
