"""NeuroDiff mask remodeling (array transforms and the mitochondria library) on synthetic and real volumes."""

from __future__ import annotations

import os
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from parameterized import parameterized
from scipy import ndimage
from skimage.draw import ellipse
from skimage.measure import find_contours, label as cc_label, regionprops

from emdiff_components.transforms import (
    ConditionToOneHot,
    LabelsToMembranes,
    MitochondriaLibrary,
    RandElasticLabelDeform,
    RandPlaceMitochondria,
)

SHARED = Path(os.environ.get("EMDIFF_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


def shared_or_skip(test: unittest.TestCase, relative: str) -> Path:
    path = SHARED / relative
    if not path.is_file():
        if os.environ.get("CI") == "true":
            test.fail(f"{path} is missing (set EMDIFF_SHARED_DATA)")
        test.skipTest(f"{path} is missing (set EMDIFF_SHARED_DATA)")
    return path


def block_labels(shape=(4, 96, 96), block=24, per_slice=False) -> np.ndarray:
    """(1, Z, Y, X) labels: a grid of square neurons (ids from 1); per_slice makes every slice's ids distinct."""
    z, y, x = shape
    grid = (np.arange(y)[:, None] // block) * (x // block) + np.arange(x)[None, :] // block + 1
    vol = np.repeat(grid[None], z, axis=0).astype(np.uint32)
    if per_slice:
        vol += (np.arange(z) * 1000)[:, None, None].astype(np.uint32)
    return vol[None]


def ellipse_mask(shape, center, radii, angle_deg) -> np.ndarray:
    """Boolean ellipse whose regionprops orientation is ``angle_deg`` (major radius first)."""
    out = np.zeros(shape, dtype=bool)
    rr, cc = ellipse(center[0], center[1], radii[0], radii[1], shape=shape, rotation=np.deg2rad(angle_deg))
    out[rr, cc] = True
    return out


def template_library(count=12, radii=(20, 7), seed=0) -> MitochondriaLibrary:
    """Elongated templates at random angles (major axis ~40 px) from a synthetic mito volume."""
    rng = np.random.default_rng(seed)
    side = 3 * radii[0]
    vol = np.zeros((count, side, side), dtype=np.uint8)
    for i in range(count):
        vol[i] = ellipse_mask((side, side), (side // 2, side // 2), radii, rng.uniform(-90, 90))
    return MitochondriaLibrary.from_volumes([vol])


NEURON_ANGLES = (0.0, 35.0, -60.0, 90.0)


def ellipse_neurons(angles=NEURON_ANGLES, z=3, cell=128, radii=(56, 24)) -> np.ndarray:
    """(1, Z, 2 cell, 2 cell) labels: one elongated neuron per quadrant (ids 1..4) at known angles, 0 elsewhere."""
    vol = np.zeros((z, 2 * cell, 2 * cell), dtype=np.int32)
    for i, angle in enumerate(angles):
        r0, c0 = (i // 2) * cell, (i % 2) * cell
        for k in range(z):
            a = angle[k] if isinstance(angle, (list, tuple)) else angle
            vol[k, r0 : r0 + cell, c0 : c0 + cell][ellipse_mask((cell, cell), (cell // 2, cell // 2), radii, a)] = i + 1
    return vol[None]


def angle_difference(a: float, b: float) -> float:
    """Difference of two axis orientations in degrees, modulo 180, in [0, 90]."""
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


class TestRandElasticLabelDeform(unittest.TestCase):
    def test_matches_independent_reference_computation(self):
        """Same seed -> the reference recipe (pad, jitter grid, cubic zoom, nearest warp, crop) computed by hand."""
        rng = np.random.default_rng(3)
        vol = rng.integers(1, 50, size=(1, 6, 50, 70)).astype(np.int32)
        deform = RandElasticLabelDeform(control_point_spacing=(3, 10, 10), jitter_sigma=(0.5, 3, 3), padding=5)
        out = deform.set_random_state(7)(vol)

        state = np.random.RandomState(7)
        state.uniform()  # RandomizableTransform.randomize draws the prob first
        padded = np.pad(vol[0], ((0, 0), (5, 5), (5, 5)), mode="reflect")
        points = tuple(max(1, int(round(s / sp))) for s, sp in zip(padded.shape, (3, 10, 10)))
        coords = np.indices(padded.shape).astype(np.float32)
        for axis, sigma in enumerate((0.5, 3, 3)):
            grid = state.normal(scale=sigma, size=points).astype(np.float32)
            dense = np.empty(padded.shape, np.float32)
            ndimage.zoom(grid, [s / c for s, c in zip(padded.shape, points)], output=dense, order=3)
            coords[axis] += dense
        expected = ndimage.map_coordinates(padded, coords, order=0, mode="constant", cval=0)[:, 5:-5, 5:-5]
        np.testing.assert_array_equal(out[0], expected)
        self.assertGreater((out != vol).mean(), 0.05)  # it did move labels

    def test_deterministic_for_a_seed(self):
        vol = block_labels()
        a = RandElasticLabelDeform().set_random_state(42)(vol)
        b = RandElasticLabelDeform().set_random_state(42)(vol)
        c = RandElasticLabelDeform().set_random_state(43)(vol)
        np.testing.assert_array_equal(a, b)
        self.assertFalse(np.array_equal(a, c))

    def test_neurons_preserved_labels_stay_in_plane(self):
        vol = block_labels(per_slice=True)
        out = RandElasticLabelDeform().set_random_state(0)(torch.as_tensor(vol.astype(np.int64)))
        self.assertIsInstance(out, torch.Tensor)
        out = out.numpy()
        self.assertEqual(set(np.unique(out)), set(np.unique(vol)))  # no neuron lost, no new value (no zeros)
        for z in range(vol.shape[1]):  # sigma_z = 0: every voxel takes a label from its own slice
            self.assertTrue(set(np.unique(out[0, z])) <= set(np.unique(vol[0, z])))

    def test_large_ids_keep_dtype(self):
        vol = block_labels().astype(np.uint32) * 40000  # ids beyond uint16 and float32-exact range survive
        out = RandElasticLabelDeform().set_random_state(1)(vol)
        self.assertEqual(out.dtype, np.uint32)
        self.assertEqual(set(np.unique(out)), set(np.unique(vol)))

    @parameterized.expand(
        [
            ("spacing", {"control_point_spacing": (4, 0, 20)}),
            ("sigma", {"jitter_sigma": (0, -1, 4)}),
            ("padding", {"padding": -1}),
            ("order", {"spline_order": 7}),
        ]
    )
    def test_bad_arguments(self, _, kwargs):
        with self.assertRaisesRegex(ValueError, "RandElasticLabelDeform"):
            RandElasticLabelDeform(**kwargs)

    def test_bad_shape(self):
        with self.assertRaisesRegex(ValueError, r"RandElasticLabelDeform.*\(1, Z, Y, X\)"):
            RandElasticLabelDeform()(np.zeros((4, 32, 32)))


MEMBRANE_CASES = [
    ("reference", True, [3, 4, 5, 6]),  # border at column 4, 3x3 dilation -> 3..5, affinity extension -> 6
    ("no_extension", False, [3, 4, 5]),
]


class TestLabelsToMembranes(unittest.TestCase):
    @parameterized.expand(MEMBRANE_CASES)
    def test_hand_computed(self, _, extension, columns):
        lab = np.ones((1, 2, 5, 10), dtype=np.int32)
        lab[..., 4:] = 2
        lab[:, 1] += 10  # another labelling in slice 1: borders along Z must not count
        mem = LabelsToMembranes(affinity_extension=extension)(lab)
        self.assertEqual(mem.dtype, np.uint8)
        expected = np.zeros_like(mem)
        expected[..., columns] = 1
        np.testing.assert_array_equal(mem, expected)

    def test_background_is_membrane(self):
        lab = np.full((1, 1, 12, 12), 5)
        lab[0, 0, 6, 6] = 0
        self.assertEqual(int(LabelsToMembranes(background_is_membrane=True)(lab)[0, 0, 6, 6]), 1)
        lab[0, 0, 6, 6] = 5
        self.assertEqual(int(LabelsToMembranes()(lab).sum()), 0)

    def test_membranes_lie_on_borders(self):
        vol = RandElasticLabelDeform().set_random_state(5)(block_labels())[0]
        mem = LabelsToMembranes()(vol[None])[0].astype(bool)
        pairs = np.zeros_like(mem)  # both voxels of every in-plane neighbour pair with different labels
        dy, dx = vol[:, 1:] != vol[:, :-1], vol[:, :, 1:] != vol[:, :, :-1]
        pairs[:, 1:] |= dy
        pairs[:, :-1] |= dy
        pairs[:, :, 1:] |= dx
        pairs[:, :, :-1] |= dx
        self.assertTrue(mem[pairs].all(), "a border voxel is not covered")
        for z in range(vol.shape[0]):  # nothing further than 2 px (chessboard) from a border voxel
            distance = ndimage.distance_transform_cdt(~pairs[z], metric="chessboard")
            self.assertLessEqual(int(distance[mem[z]].max()), 2)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "LabelsToMembranes.*kernel_size"):
            LabelsToMembranes(kernel_size=2)
        with self.assertRaisesRegex(ValueError, "LabelsToMembranes.*dilation_iterations"):
            LabelsToMembranes(dilation_iterations=-1)
        with self.assertRaisesRegex(ValueError, "LabelsToMembranes"):
            LabelsToMembranes()(np.zeros((2, 1, 4, 4)))


# (name, center (row, col), rotation in degrees, filled rows (first, last), filled cols (first, last))
DRAW_CASES = [
    ("upright", (10, 10), 0.0, (9, 11), (7, 13)),
    ("quarter_turn", (10, 10), 90.0, (7, 13), (9, 11)),
    ("half_turn", (10, 10), 180.0, (9, 11), (7, 13)),
    ("clipped_corner", (0, 19), 0.0, (0, 1), (16, 19)),
]


class TestMitochondriaLibrary(unittest.TestCase):
    def test_filters_and_measures(self):
        mask = np.zeros((1, 100, 100), dtype=np.uint8)
        keep1 = ellipse_mask((100, 100), (30, 30), (15, 6), 20.0)
        keep2 = ellipse_mask((100, 100), (60, 70), (12, 5), -45.0)
        mask[0][keep1 | keep2] = 1
        mask[0][80:85, 10:15] = 1  # area 25 < 100
        mask[0][0:15, 60:75] = 1  # touches the border
        mask[0][91:99, 40:60] = 1  # last row 98: its contour reaches 98.5 >= H - 2, within the reference margin
        mask[0][85:98, 80:90] = 1  # last row 97, last column 89 -> contour 97.5 / 89.5 < 98: kept (3rd template)
        lib = MitochondriaLibrary.from_volumes([mask])
        self.assertEqual(len(lib), 3)
        self.assertAlmostEqual(lib.major_axis_lengths[2], regionprops(mask[0, 85:98, 80:90])[0].axis_major_length)
        for i, blob in enumerate((keep1, keep2)):
            props = regionprops(blob.astype(np.uint8))[0]
            self.assertAlmostEqual(lib.orientations[i], np.rad2deg(props.orientation), places=6)
            self.assertAlmostEqual(lib.major_axis_lengths[i], props.axis_major_length, places=6)
            raw = max(find_contours(blob.astype(float), 0.5), key=len)
            self.assertLess(len(lib.contours[i]), len(raw))  # simplified ...
            np.testing.assert_allclose(lib.contours[i].mean(0), raw.mean(0), atol=2.0)  # ... but the same outline

    @parameterized.expand(DRAW_CASES)
    def test_draw_hand_computed(self, _, center, rotation, rows, cols):
        # a 2 x 6 rectangle, point mean (1, 3): corners at center + (-1, -3), (-1, 3), (1, 3), (1, -3)
        lib = MitochondriaLibrary([np.array([[0, 0], [0, 6], [2, 6], [2, 0]], float)], [0.0], [6.0])
        expected = np.zeros((20, 20), bool)
        expected[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
        np.testing.assert_array_equal(lib.draw(0, (20, 20), center, rotation), expected)

    def test_draw_index_out_of_range(self):
        with self.assertRaisesRegex(IndexError, r"MitochondriaLibrary.draw: template 3 out of range \(library of 3\)"):
            template_library(count=3).draw(3, (8, 8), (4, 4), 0.0)

    def test_save_appends_npz_and_leaves_no_temp(self):
        with tempfile.TemporaryDirectory() as tmp:
            template_library(count=2).save(os.path.join(tmp, "lib"))
            self.assertEqual(os.listdir(tmp), ["lib.npz"])
            self.assertEqual(len(MitochondriaLibrary.load(os.path.join(tmp, "lib.npz"))), 2)

    def test_save_load_round_trip(self):
        lib = template_library(count=3)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "lib.npz")
            lib.save(path)
            back = MitochondriaLibrary.load(path)
        self.assertEqual(len(back), 3)
        for a, b in zip(lib.contours, back.contours):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(lib.orientations, back.orientations)
        np.testing.assert_array_equal(lib.major_axis_lengths, back.major_axis_lengths)

    def test_real_isbi_mitochondria(self):
        mito = __import__("tifffile").imread(shared_or_skip(self, "isbi2012_em/train-mito.tif"))
        lib = MitochondriaLibrary.from_volumes([mito[:10]])
        self.assertGreater(len(lib), 5)
        self.assertTrue(np.all(lib.major_axis_lengths > 10))
        # real mitochondria lie in every direction: the templates' orientations spread over most of [-90, 90]
        self.assertGreater(float(np.ptp(lib.orientations)), 90.0)

    def test_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            bad = os.path.join(tmp, "bad.npz")
            Path(bad).write_bytes(b"not a zip")
            with self.assertRaisesRegex(ValueError, "bad.npz"):
                MitochondriaLibrary.load(bad)
            np.savez(os.path.join(tmp, "partial.npz"), points=np.zeros((3, 2)))
            with self.assertRaisesRegex(ValueError, "partial.npz.*lacks"):
                MitochondriaLibrary.load(os.path.join(tmp, "partial.npz"))
        with self.assertRaisesRegex(ValueError, "not found"):
            MitochondriaLibrary.load("/nonexistent/lib.npz")
        with self.assertRaisesRegex(ValueError, "same length"):
            MitochondriaLibrary([np.zeros((4, 2))], [0.0, 1.0], [3.0])
        with self.assertRaisesRegex(ValueError, "volume 0"):
            MitochondriaLibrary.from_volumes([np.zeros((2, 2, 2, 2, 2))])


PLACE_KW = {"min_region_area": 2000}


class TestRandPlaceMitochondria(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.library = template_library()

    def place(self, labels, seed=0, **kwargs):
        placer = RandPlaceMitochondria(self.library, **{**PLACE_KW, **kwargs}).set_random_state(seed)
        placer.randomize(labels[0])
        return placer.place(labels[0])

    def test_inside_and_oriented(self):
        labels = ellipse_neurons()
        mask, records = self.place(labels)
        accepted = [r for r in records if r["accepted"]]
        self.assertEqual(len(accepted), 4 * labels.shape[1])  # every neuron, every slice
        for z in range(labels.shape[1]):
            blobs = cc_label(mask[z], connectivity=1)
            self.assertEqual(blobs.max(), 4)
            for blob in regionprops(blobs):
                owner = np.bincount(labels[0, z][blobs == blob.label]).argmax()
                inside = (labels[0, z][blobs == blob.label] == owner).mean()
                self.assertGreaterEqual(inside, 0.8)
                region_angle = np.rad2deg(regionprops((labels[0, z] == owner).astype(np.uint8))[0].orientation)
                self.assertLess(angle_difference(region_angle, NEURON_ANGLES[owner - 1]), 1.0)
                # jitter 5 degrees + up to 2 degrees for rounding the template to pixels and the opening / closing
                self.assertLessEqual(angle_difference(np.rad2deg(blob.orientation), region_angle), 7.0)

    def test_jitter_spreads_orientations(self):
        labels = ellipse_neurons(angles=(30.0,) * 4, z=6)
        _, records = self.place(labels, angle_jitter=5.0)
        offsets = [angle_difference(r["orientation"], r["region_orientation"]) for r in records]
        self.assertLessEqual(max(offsets), 5.0 + 1e-6)
        self.assertGreater(np.std(offsets), 0.5)
        _, records = self.place(labels, angle_jitter=0.0)
        self.assertLess(max(angle_difference(r["orientation"], r["region_orientation"]) for r in records), 1e-6)

    def test_reorient_per_slice(self):
        labels = ellipse_neurons(angles=([0.0, 40.0, 80.0],) * 4)
        for reorient, bound in ((True, 5.0), (False, None)):
            _, records = self.place(labels, reorient_per_slice=reorient, angle_jitter=5.0)
            offsets = [angle_difference(r["orientation"], r["region_orientation"]) for r in records]
            if bound:
                self.assertLessEqual(max(offsets), bound + 1e-6)
            else:  # reference: the rotation is fixed at the first slice, so later slices lag behind the neuron
                self.assertGreater(max(offsets), 30.0)

    def test_outside_fraction_rejects(self):
        labels = ellipse_neurons(radii=(56, 12))  # 24 px wide neurons, templates 40 px wide: ~40 % sticks out
        wide = template_library(count=4, radii=(40, 20))
        for limit, expected in ((0.2, False), (1.0, True)):
            placer = RandPlaceMitochondria(wide, size_ratio_range=(0.6, 0.8), max_outside_fraction=limit, **PLACE_KW)
            mask = placer.set_random_state(0)(labels)
            records = placer.place(labels[0])[1]
            self.assertEqual(len(records), 4 * labels.shape[1])
            self.assertTrue(all(r["outside_fraction"] > 0.25 for r in records))
            self.assertTrue(all(r["accepted"] == expected for r in records))
            self.assertEqual(bool(mask.any()), expected)

    def test_selection_and_determinism(self):
        labels = ellipse_neurons()
        a = RandPlaceMitochondria(self.library, num_sampled=2, **PLACE_KW).set_random_state(11)(labels)
        b = RandPlaceMitochondria(self.library, num_sampled=2, **PLACE_KW).set_random_state(11)(labels)
        np.testing.assert_array_equal(a, b)
        neurons = set(np.unique(labels[0][a[0] > 0]))
        self.assertEqual(len(neurons), 2)
        # top_fraction 0.25 of 4 neurons -> only the largest one can get mitochondria
        largest = int(np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        c = RandPlaceMitochondria(self.library, selection="top_fraction", top_fraction=0.25, **PLACE_KW)
        c.set_random_state(0)
        self.assertEqual(set(np.unique(labels[0][c(labels)[0] > 0])), {largest})

    def test_small_regions_skipped(self):
        mask = RandPlaceMitochondria(self.library, min_region_area=5000).set_random_state(0)(ellipse_neurons())
        self.assertEqual(int(mask.sum()), 0)  # the neurons are ~4200 px per slice

    @parameterized.expand(
        [
            ("selection", {"selection": "top10"}, ValueError),
            ("fraction", {"top_fraction": 0.0}, ValueError),
            ("ratio", {"size_ratio_range": (0.4, 0.3)}, ValueError),
            ("sampled", {"num_sampled": 0}, ValueError),
            ("outside", {"max_outside_fraction": 1.5}, ValueError),
            ("library", {"library": 3}, TypeError),
        ]
    )
    def test_bad_arguments(self, _, kwargs, error):
        with self.assertRaisesRegex(error, "RandPlaceMitochondria"):
            RandPlaceMitochondria(**{"library": self.library, **kwargs})

    def test_missing_library(self):
        with self.assertRaisesRegex(ValueError, "RandPlaceMitochondria.*library"):
            RandPlaceMitochondria()(ellipse_neurons())


class TestConditionToOneHot(unittest.TestCase):
    def test_values(self):
        cond = np.array([[[0, 1, 2, 2]]], dtype=np.uint8)
        out = ConditionToOneHot()(cond)
        self.assertEqual(out.dtype, np.float32)
        np.testing.assert_array_equal(out, [[[-1, 1, -1, -1]], [[-1, -1, 1, 1]]])
        t = ConditionToOneHot()(torch.as_tensor(cond))
        self.assertIsInstance(t, torch.Tensor)
        np.testing.assert_array_equal(t.numpy(), out)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, r"ConditionToOneHot.*found \[3\]"):
            ConditionToOneHot()(np.array([[[0, 1, 3]]]))
        with self.assertRaisesRegex(ValueError, "ConditionToOneHot.*'cond.tif'"):
            ConditionToOneHot()(np.array([[[0.5]]]), source="cond.tif")
        with self.assertRaisesRegex(ValueError, "ConditionToOneHot.*one channel"):
            ConditionToOneHot()(np.zeros((2, 3, 3)))
        with self.assertRaisesRegex(ValueError, "ConditionToOneHot.*class_values"):
            ConditionToOneHot(class_values=(0, 1))


if __name__ == "__main__":
    unittest.main()
