"""Dictionary wrappers of :class:`MeshToMaskStack` and :class:`LiftMask3D` (stage 2 of the cell cascade)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection
from monai.transforms import MapTransform

from .array import LiftMask3D, MeshToMaskStack

__all__ = ["LiftMask3Dd", "MeshToMaskStackd"]


class MeshToMaskStackd(MapTransform):
    """Dictionary twin of :class:`MeshToMaskStack`: the mesh under each key (a file path, ``(vertices, faces)`` or a
    Trimesh) is replaced by its ``(Z, Y, X)`` uint8 mask stack.

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515.

    Args:
        keys: keys of the meshes (e.g. ``"mesh"``).
        size, num_slices, z_range, scale, margin, placement, fill, band: see :class:`MeshToMaskStack` (defaults 256,
            10, ``(0.5, 1.0)``, 200.0, 20, ``"min"``, ``"even_odd"``, 0.0; ``band=0.1, fill="external"`` is the
            public slicer).
        allow_missing_keys: don't raise for missing keys.

    Example:
        >>> MeshToMaskStackd("mask")({"mask": "cell_0001/neus/mesh.ply"})["mask"].shape  # doctest: +SKIP
        (10, 256, 256)
    """

    backend = MeshToMaskStack.backend

    def __init__(
        self,
        keys: KeysCollection,
        size: int | Sequence[int] = 256,
        num_slices: int = 10,
        z_range: Sequence[float] = (0.5, 1.0),
        scale: float | None = 200.0,
        margin: int = 20,
        placement: str = "min",
        fill: str = "even_odd",
        band: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.slicer = MeshToMaskStack(size, num_slices, z_range, scale, margin, placement, fill, band)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.slicer(d[key])
        return d


class LiftMask3Dd(MapTransform):
    """Dictionary twin of :class:`LiftMask3D`: each 2D mask becomes the mask stack of its lifted 3D cell.

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515.

    Args:
        keys: keys of the ``(Y, X)`` or ``(1, Y, X)`` masks.
        num_slices, z_range, profile, height_ratio: see :class:`LiftMask3D` (defaults 10, ``(0.5, 1.0)``,
            ``"ellipsoid"``, 1.0).
        allow_missing_keys: don't raise for missing keys.

    Example:
        >>> LiftMask3Dd("mask")({"mask": np.pad(np.ones((9, 9)), 4)})["mask"].shape  # doctest: +SKIP
        (10, 17, 17)
    """

    backend = LiftMask3D.backend

    def __init__(
        self,
        keys: KeysCollection,
        num_slices: int = 10,
        z_range: Sequence[float] = (0.5, 1.0),
        profile: str = "ellipsoid",
        height_ratio: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.lifter = LiftMask3D(num_slices, z_range, profile, height_ratio)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.lifter(d[key])
        return d
