from __future__ import annotations

import os
import tempfile
import unittest

import numpy as np
import torch
from monai.utils import optional_import
from parameterized import parameterized

from emdiff_components.transforms import LiftMask3D, MeshToMaskStack

trimesh, has_trimesh = optional_import("trimesh")

F_LEVELS = np.linspace(0.5, 1.0, 10)  # public slice_mesh_to_2d.py: linspace(max_z / 2, max_z, 10) of the shifted mesh


def pixel_centres_in_disc(centre, radius, shape, strict):
    """Number of pixel centres (i, j) inside the disc, counted directly (independent of the slicer)."""
    if radius <= 0:
        return 0
    ii, jj = np.mgrid[: shape[0], : shape[1]]
    d2 = (ii - centre[0]) ** 2 + (jj - centre[1]) ** 2
    return int((d2 < radius**2).sum() if strict else (d2 <= radius**2).sum())


def sphere_bounds(mesh, origin, centre, scale, shape, heights):
    """Pixel counts bracketing each section of a convex sphere mesh.

    The icosphere is the convex hull of points on the sphere of radius R (so it lies inside that ball) and each face
    plane is at least ``d_min`` from the centre (so it contains the ball of radius d_min): its section at height dz
    contains the disc of radius sqrt(d_min^2 - dz^2) and lies in the disc of radius sqrt(R^2 - dz^2). The filled pixel
    count therefore lies between the pixel-centre counts of those two discs. ``origin``: the sphere's centre (mesh
    units); ``centre``: its axis in pixels; ``heights``: the section heights dz above the centre.
    """
    radius = np.linalg.norm(mesh.vertices - origin, axis=1).max()
    d_min = np.abs(np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles[:, 0] - origin)).min()
    bounds = []
    for dz in heights:
        r_in = np.sqrt(max(d_min**2 - dz**2, 0.0)) * scale
        r_out = np.sqrt(max(radius**2 - dz**2, 0.0)) * scale
        bounds.append(
            (pixel_centres_in_disc(centre, r_in, shape, True), pixel_centres_in_disc(centre, r_out, shape, False))
        )
    return bounds, radius


def hollow_box(outer, inner):
    """A closed mesh of two shells: a cube with a cubic cavity (the inner shell wound inwards)."""
    a = trimesh.creation.box(extents=outer)
    b = trimesh.creation.box(extents=inner)
    b.invert()
    return trimesh.util.concatenate([a, b])


# (name, slicer arguments, placement whose pixel centre the test computes)
SPHERE_CASES = [
    ("public_defaults", {}, "min"),
    ("center_fit", {"size": (72, 80), "scale": None, "margin": 4, "placement": "center"}, "center"),
]


@unittest.skipUnless(has_trimesh, "trimesh not installed")
class TestMeshToMaskStack(unittest.TestCase):
    @parameterized.expand(SPHERE_CASES)
    def test_sphere_disc_areas(self, _, kwargs, placement):
        origin = np.array([0.11, -0.07, 0.4])  # nothing is at the origin: the shift to the minimum matters
        mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.3)
        mesh.apply_translation(origin)
        slicer = MeshToMaskStack(**kwargs)
        out = slicer((mesh.vertices, mesh.faces))
        shape = out.shape[1:]
        v = mesh.vertices
        low, high = v.min(axis=0), v.max(axis=0)
        # the public z-levels, recomputed from the vertices, measured from the sphere's centre
        dz = low[2] + F_LEVELS * (high[2] - low[2]) - origin[2]
        if placement == "min":  # public: pixel floor(200 * (x - min)) + 20, i.e. centre at 200 * (x - min) + 19.5
            scale = 200.0
            centre = scale * (origin[:2] - low[:2]) + 20 - 0.5
        else:
            scale = (min(shape) - 2 * 4) / (high[:2] - low[:2]).max()
            centre = (np.array(shape) - 1) / 2 + scale * (origin[:2] - (low[:2] + high[:2]) / 2)
        bounds, radius = sphere_bounds(mesh, origin, centre, scale, shape, dz)
        self.assertEqual(out.shape[0], 10)
        self.assertEqual(out.dtype, np.uint8)
        self.assertTrue(set(np.unique(out)) <= {0, 1})
        for k, (lo, hi) in enumerate(bounds):
            self.assertGreaterEqual(int(out[k].sum()), lo, k)
            self.assertLessEqual(int(out[k].sum()), hi, k)
        # and against the sphere formula: the area pi (R^2 - z^2) in pixels within the pixel-centre bound of a disc
        # (centres in the disc of radius r lie in r +- sqrt(2)/2: |N - pi r^2| <= pi (sqrt(2) r + 1/2)), the mesh's
        # facets (icosphere, 5120 faces) cutting less than 0.2 % of the area at this size
        for k in range(9):
            r = np.sqrt(radius**2 - dz[k] ** 2) * scale
            self.assertLessEqual(
                abs(out[k].sum() - np.pi * r**2), np.pi * (np.sqrt(2) * r + 0.5) + 0.002 * np.pi * r**2
            )
        # the discs are centred on the sphere's axis
        for k in range(6):
            rows, cols = np.nonzero(out[k])
            np.testing.assert_allclose([rows.mean(), cols.mean()], centre, atol=0.5)
        self.assertLessEqual(int(out[-1].sum()), 2)  # the top plane touches the pole

    def test_cone_follows_the_public_z_range(self):
        # trimesh's cone: base disc (a 32-gon of radius R) at z = 0, apex at z = h; section radius R (1 - z / h)
        mesh = trimesh.creation.cone(radius=0.25, height=0.5, sections=32)
        out = MeshToMaskStack(size=128, scale=200.0, margin=10, placement="center")((mesh.vertices, mesh.faces))
        for k, f in enumerate(F_LEVELS):
            circumradius = 0.25 * (1 - f) * 200.0
            area = 16 * circumradius**2 * np.sin(2 * np.pi / 32)  # regular 32-gon
            perimeter = 64 * circumradius * np.sin(np.pi / 32)
            # a convex polygon P of area A and perimeter L: the pixels with centres in P lie in P dilated by sqrt(2)/2
            # and cover P eroded by sqrt(2)/2 (Steiner): |N - A| <= L sqrt(2)/2 + pi / 2
            self.assertLessEqual(abs(int(out[k].sum()) - area), perimeter * np.sqrt(0.5) + np.pi / 2, k)
        self.assertEqual(int(out[0].sum()), int(out.sum(axis=(1, 2)).max()))  # the first section is the widest

    @parameterized.expand(
        [
            # public defaults: minimum at pixel 20, 200 px per unit -> 60 x 40 pixels from (20, 20)
            ({}, (256, 256), (20, 80), (20, 60)),
            # centred in a (64, 48) grid at 100 px per unit: rows 31.5 +- 15 -> 17..46, cols 23.5 +- 10 -> 14..33
            ({"size": (64, 48), "scale": 100.0, "placement": "center", "margin": 2}, (64, 48), (17, 47), (14, 34)),
            # absolute: mesh (x, y) in [0.1, 0.4] x [0.2, 0.4] + 0.005 at 100 px per unit: pixel centres 11..40 x 21..40
            ({"size": 64, "scale": 100.0, "placement": "absolute", "shift": 0.005}, (64, 64), (11, 41), (21, 41)),
        ]
    )
    def test_box_gives_constant_rectangles(self, kwargs, shape, rows, cols):
        kwargs = dict(kwargs)
        shift = kwargs.pop("shift", 0.0)  # keeps the box's sides off the pixel centres
        mesh = trimesh.creation.box(bounds=[[0.1 + shift, 0.2 + shift, -0.3], [0.4 + shift, 0.4 + shift, 0.1]])
        out = MeshToMaskStack(**kwargs)((mesh.vertices, mesh.faces))
        expected = np.zeros(shape, dtype=np.uint8)
        expected[rows[0] : rows[1], cols[0] : cols[1]] = 1
        for k in range(10):  # the top plane is the box's top face: still the full rectangle
            np.testing.assert_array_equal(out[k], expected, err_msg=str(k))

    def test_cavity_even_odd_and_external(self):
        # 0.6 cube with a 0.2 x 0.2 x 0.15 cavity, 100 px per unit: levels 0, 1/30, 2/30 cut the cavity
        mesh = hollow_box((0.6, 0.6, 0.6), (0.2, 0.2, 0.15))
        kwargs = {"size": 64, "scale": 100.0, "placement": "center", "margin": 2}
        ring = MeshToMaskStack(**kwargs)(mesh)
        filled = MeshToMaskStack(fill="external", **kwargs)(mesh)
        self.assertEqual(ring.sum(axis=(1, 2)).tolist(), [3600 - 400] * 3 + [3600] * 7)
        self.assertEqual(filled.sum(axis=(1, 2)).tolist(), [3600] * 10)
        self.assertEqual(int(ring[0, 22:42, 22:42].sum()), 0)  # the hole: cols / rows 31.5 +- 10

    def test_band_reproduces_the_public_slab(self):
        # public: the section at z is the outline of the vertices within 0.1 of z; for a sphere the disc at z - 0.1
        mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.3)
        out = MeshToMaskStack(band=0.1, fill="external")(mesh)
        low, high = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
        # every sub-level of the slab is at least dz above the equator, and one is at most 0.0025 (half the
        # 0.2 / 40 spacing) above it: dz itself when the slab stays above the equator, else the nearest to it
        dz = np.maximum(low[2] + F_LEVELS * (high[2] - low[2]) - 0.1, 0.0)
        centre = 200.0 * (0 - low[:2]) + 19.5
        upper, _ = sphere_bounds(mesh, np.zeros(3), centre, 200.0, out.shape[1:], dz)
        lower, _ = sphere_bounds(mesh, np.zeros(3), centre, 200.0, out.shape[1:], np.where(dz > 0, dz, 0.0025))
        for k in range(10):
            self.assertGreaterEqual(int(out[k].sum()), lower[k][0], k)
            self.assertLessEqual(int(out[k].sum()), upper[k][1], k)
        self.assertGreater(int(out[-1].sum()), 0.5 * np.pi * (0.3**2 - 0.2**2) * 200**2)  # top: the 0.1 cap's outline

    def test_files_and_trimesh_agree_with_arrays(self):
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
        slicer = MeshToMaskStack(size=96, scale=None, margin=8, placement="center")
        expected = slicer((mesh.vertices, mesh.faces))
        self.assertGreater(int(expected[0].sum()), 0)
        with tempfile.TemporaryDirectory() as tmp:
            for ext in ("ply", "obj", "stl", "off"):
                path = os.path.join(tmp, f"cell.{ext}")
                mesh.export(path)
                np.testing.assert_array_equal(slicer(path), expected, err_msg=ext)
        np.testing.assert_array_equal(slicer(mesh), expected)

    def test_bad_meshes(self):
        mesh = trimesh.creation.icosphere(subdivisions=2)
        with tempfile.TemporaryDirectory() as tmp:
            open_path = os.path.join(tmp, "open_cell.ply")
            trimesh.Trimesh(mesh.vertices, mesh.faces[1:]).export(open_path)  # one face removed
            with self.assertRaisesRegex(ValueError, r"open_cell\.ply.*not closed"):
                MeshToMaskStack()(open_path)
            unknown = os.path.join(tmp, "cell.xyz")
            with open(unknown, "w") as handle:
                handle.write("0 0 0\n")
            with self.assertRaisesRegex(ValueError, r"unknown mesh format.*cell\.xyz.*\.ply"):
                MeshToMaskStack()(unknown)
            with self.assertRaisesRegex(FileNotFoundError, "missing.ply"):
                MeshToMaskStack()(os.path.join(tmp, "missing.ply"))
            empty = os.path.join(tmp, "empty.ply")
            with open(empty, "w") as handle:
                handle.write(
                    "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                    "property float z\nend_header\n"
                )
            with self.assertRaisesRegex(ValueError, r"empty\.ply.*empty"):
                MeshToMaskStack()(empty)
            garbage = os.path.join(tmp, "garbage.ply")
            with open(garbage, "w") as handle:
                handle.write("not a mesh")
            with self.assertRaisesRegex(ValueError, r"cannot read mesh file.*garbage\.ply"):
                MeshToMaskStack()(garbage)
        with self.assertRaisesRegex(ValueError, r"\(vertices, faces\).*not closed"):
            MeshToMaskStack()((mesh.vertices, mesh.faces[:-1]))
        with self.assertRaisesRegex(ValueError, r"shaped \(V, 3\)"):
            MeshToMaskStack()((mesh.vertices[:, :2], mesh.faces))
        with self.assertRaisesRegex(TypeError, "mesh file path"):
            MeshToMaskStack()(3)
        with self.assertRaisesRegex(ValueError, "more than the"):  # 2 units at 200 px do not fit 256 pixels
            MeshToMaskStack()(mesh)

    @parameterized.expand(
        [
            ({"size": 0}, "size"),
            ({"num_slices": 0}, "num_slices"),
            ({"z_range": (0.9, 0.5)}, "z_range"),
            ({"scale": -1.0}, "scale"),
            ({"scale": None, "placement": "absolute"}, "scale=None"),
            ({"margin": 128}, "margin"),
            ({"placement": "top"}, "placement"),
            ({"fill": "holes"}, "fill"),
            ({"band": -0.1}, "band"),
        ]
    )
    def test_bad_arguments(self, kwargs, word):
        with self.assertRaisesRegex(ValueError, f"MeshToMaskStack: {word}"):
            MeshToMaskStack(**kwargs)


def disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2).astype(np.uint8)


def odd_mask():
    """An L, a ring with its hole, and a single pixel: several components, a hole and a thin part."""
    mask = np.zeros((48, 56), dtype=np.uint8)
    mask[5:20, 5:45] = 1
    mask[5:40, 5:15] = 1
    yy, xx = np.mgrid[:48, :56]
    r = np.hypot(yy - 32, xx - 38)
    mask[(r <= 12) & (r >= 5)] = 1
    mask[44, 50] = 1
    return mask


def brute_force_sections(mask, profile):
    """The rule of LiftMask3D written out directly: distance of each mask pixel to the nearest background pixel centre
    (brute force over all pairs, the grid padded by background), minus 1/2, against r_max * g(t)."""
    padded = np.pad(mask, 1)
    inside, outside = np.argwhere(padded > 0), np.argwhere(padded == 0)
    dist = np.sqrt(((inside[:, None, :] - outside[None, :, :]) ** 2).sum(-1)).min(axis=1) - 0.5
    t = np.linspace(0.0, 1.0, 10)
    g = 1 - np.sqrt(1 - t**2) if profile == "ellipsoid" else t
    out = np.zeros((10, *padded.shape), dtype=np.uint8)
    for k in range(10):
        keep = inside[dist > dist.max() * g[k] + 1e-4]
        out[k, keep[:, 0], keep[:, 1]] = 1
    return out[:, 1:-1, 1:-1]


MASKS = [("disc", disc((64, 64), (32, 30), 20)), ("odd", odd_mask()), ("full", np.ones((7, 9), dtype=np.uint8))]


class TestLiftMask3D(unittest.TestCase):
    @parameterized.expand([(name, mask, profile) for name, mask in MASKS for profile in ("ellipsoid", "cone")])
    def test_sections_follow_the_rule(self, _, mask, profile):
        out = LiftMask3D(profile=profile)(mask)
        np.testing.assert_array_equal(out, brute_force_sections(mask, profile))
        # projection from the top = the mask; every section inside the one below
        np.testing.assert_array_equal(out.max(axis=0), mask)
        np.testing.assert_array_equal(out[0], mask)
        self.assertTrue(np.all(out[1:] <= out[:-1]))
        self.assertEqual(int(out[-1].sum()), 0)  # the top touches the ridge

    def test_disc_becomes_a_sphere(self):
        out = LiftMask3D()(disc((64, 64), (32, 30), 20))
        t = np.linspace(0.0, 1.0, 10)
        for k in range(9):
            rho = 20 * np.sqrt(1 - t[k] ** 2)
            # the digital disc's border and the pixel distance transform place the section's edge within 1 pixel of
            # the sphere's circle of radius rho: |area - pi rho^2| <= pi ((rho + 1)^2 - rho^2)
            self.assertLessEqual(abs(int(out[k].sum()) - np.pi * rho**2), np.pi * (2 * rho + 1), k)

    def test_channel_and_tensor(self):
        mask = disc((32, 32), (16, 16), 9)
        expected = LiftMask3D(num_slices=4, z_range=(0.25, 0.75))(mask)
        # z_range (0.25, 0.75) of a cell mirrored about its equator: t = |2 f - 1| = 1/2, 1/6, 1/6, 1/2
        np.testing.assert_array_equal(expected[0], expected[3])
        np.testing.assert_array_equal(expected[1], expected[2])
        self.assertLess(int(expected[0].sum()), int(expected[1].sum()))
        out = LiftMask3D(num_slices=4, z_range=(0.25, 0.75))(torch.as_tensor(mask[None]))
        self.assertIsInstance(out, torch.Tensor)
        self.assertEqual(tuple(out.shape), (1, 4, 32, 32))
        self.assertEqual(out.dtype, torch.uint8)
        np.testing.assert_array_equal(out[0].numpy(), expected)

    @parameterized.expand([(name, mask, profile) for name, mask in MASKS[:2] for profile in ("ellipsoid", "cone")])
    def test_volume_is_the_mirrored_stack(self, _, mask, profile):
        lifter = LiftMask3D(profile=profile)
        stack, volume = lifter(mask), lifter.volume(mask)
        self.assertEqual(volume.shape, (19, *mask.shape))
        np.testing.assert_array_equal(volume[9:], stack)  # the planes from the equator up are the sections
        np.testing.assert_array_equal(volume, volume[::-1])
        np.testing.assert_array_equal(volume.max(axis=0), mask)

    @unittest.skipUnless(has_trimesh, "trimesh not installed")
    @parameterized.expand([(name, mask, ext) for name, mask in MASKS for ext in ("ply", "obj")])
    def test_round_trip_through_a_mesh_file(self, _, mask, ext):
        lifter = LiftMask3D(height_ratio=0.8)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"cell.{ext}")
            vertices, _ = lifter.to_mesh(mask, path)
            loaded = trimesh.load(path, force="mesh")
            self.assertTrue(loaded.is_watertight)
            self.assertGreater(loaded.volume, 0)  # wound outwards
            back = MeshToMaskStack(size=mask.shape, scale=1.0, placement="absolute")(path)
        # the default sections lie on the sampling planes: the slicer recovers the stack pixel for pixel
        np.testing.assert_array_equal(back, lifter(mask))
        s_max = LiftMask3D.border_distance(mask > 0).max()
        # half-height 0.8 r_max, less the 1e-4 pixel tie margin at the ridge
        np.testing.assert_allclose([vertices[:, 2].min(), vertices[:, 2].max()], [-0.8 * s_max, 0.8 * s_max], atol=1e-3)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "LiftMask3D: the mask is empty"):
            LiftMask3D()(np.zeros((8, 8)))
        with self.assertRaisesRegex(ValueError, r"LiftMask3D: expected a \(Y, X\)"):
            LiftMask3D()(np.ones((2, 8, 8)))
        with self.assertRaisesRegex(ValueError, "LiftMask3D: the mask contains NaN"):
            LiftMask3D()(np.full((8, 8), np.nan))
        with self.assertRaisesRegex(ValueError, "LiftMask3D: profile"):
            LiftMask3D(profile="dome")
        with self.assertRaisesRegex(ValueError, "LiftMask3D: height_ratio"):
            LiftMask3D(height_ratio=0.0)
        with self.assertRaisesRegex(ValueError, "LiftMask3D: num_slices"):
            LiftMask3D(num_slices=0)
        with self.assertRaisesRegex(ValueError, "LiftMask3D: z_steps"):
            LiftMask3D().volume(np.ones((4, 4)), z_steps=0)
        with self.assertRaisesRegex(ValueError, r"LiftMask3D: unknown mesh format of 'cell\.vtk'"):
            LiftMask3D().to_mesh(np.ones((4, 4)), "cell.vtk")


if __name__ == "__main__":
    unittest.main()
