from __future__ import annotations

import os
import tempfile
import unittest

import numpy as np
from monai.utils import optional_import

from emdiff_components.transforms import LiftMask3D, LiftMask3Dd, MeshToMaskStack, MeshToMaskStackd

trimesh, has_trimesh = optional_import("trimesh")


def ellipse(shape=(40, 48), centre=(20, 22), radii=(12, 17)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2) <= 1).astype(np.uint8)


@unittest.skipUnless(has_trimesh, "trimesh not installed")
class TestMeshToMaskStackd(unittest.TestCase):
    def test_same_as_array_and_other_keys_kept(self):
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.25)
        kwargs = {"size": 128, "num_slices": 6, "scale": 200.0, "margin": 10, "fill": "external", "band": 0.02}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cell_0001.ply")
            mesh.export(path)
            out = MeshToMaskStackd("mask", **kwargs)({"mask": path, "name": "cell_0001"})
            expected = MeshToMaskStack(**kwargs)(path)
        np.testing.assert_array_equal(out["mask"], expected)
        self.assertEqual(out["name"], "cell_0001")
        # the sphere's equator: a disc of radius 50 px, pi 50^2 within the pixel-centre bound pi (sqrt(2) 50 + 1/2)
        self.assertLessEqual(abs(int(out["mask"][0].sum()) - np.pi * 50**2), np.pi * (np.sqrt(2) * 50 + 0.5))

    def test_errors(self):
        with self.assertRaises(KeyError):
            MeshToMaskStackd("mesh")({"mask": "cell.ply"})
        self.assertEqual(MeshToMaskStackd("mesh", allow_missing_keys=True)({"a": 1}), {"a": 1})
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "holey.obj")
            sphere = trimesh.creation.icosphere(subdivisions=1)
            trimesh.Trimesh(sphere.vertices, sphere.faces[2:]).export(path)
            with self.assertRaisesRegex(ValueError, r"holey\.obj.*not closed"):
                MeshToMaskStackd("mesh")({"mesh": path})
        with self.assertRaisesRegex(ValueError, "MeshToMaskStack: placement"):
            MeshToMaskStackd("mesh", placement="corner")


class TestLiftMask3Dd(unittest.TestCase):
    def test_same_as_array_for_every_key(self):
        mask = ellipse()
        out = LiftMask3Dd(["a", "b"], num_slices=5, profile="cone")({"a": mask, "b": mask[None], "c": 7})
        expected = LiftMask3D(num_slices=5, profile="cone")(mask)
        np.testing.assert_array_equal(out["a"], expected)
        np.testing.assert_array_equal(out["b"], expected[None])
        self.assertEqual(out["c"], 7)
        # cone on an ellipse: the equator is the mask, then the sections shrink to the ridge
        np.testing.assert_array_equal(out["a"][0], mask)
        self.assertTrue(np.all(np.diff(out["a"].sum(axis=(1, 2)).astype(int)) < 0))
        self.assertEqual(int(out["a"][-1].sum()), 0)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "LiftMask3D: the mask is empty"):
            LiftMask3Dd("mask")({"mask": np.zeros((6, 6))})
        with self.assertRaisesRegex(ValueError, "LiftMask3D: z_range"):
            LiftMask3Dd("mask", z_range=(0.5, 1.5))


if __name__ == "__main__":
    unittest.main()
