"""Dictionary twins of the NeuroDiff remodeling transforms and the whole recipe, RemodelMasksd."""

from __future__ import annotations

import os
import tempfile
import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from parameterized import parameterized

from emdiff_components.transforms import (
    ConditionToOneHotd,
    LabelsToMembranes,
    LabelsToMembranesd,
    RandElasticLabelDeform,
    RandElasticLabelDeformd,
    RandPlaceMitochondria,
    RandPlaceMitochondriad,
    RemodelMasksd,
)
from tests.transforms.test_remodel import (
    PLACE_KW,
    block_labels,
    ellipse_mask,
    ellipse_neurons,
    shared_or_skip,
    template_library,
)


class TestRandElasticLabelDeformd(unittest.TestCase):
    def test_same_deformation_for_all_keys_and_array_parity(self):
        vol = block_labels()
        d = RandElasticLabelDeformd(["label", "copy"]).set_random_state(4)({"label": vol, "copy": vol.copy()})
        np.testing.assert_array_equal(d["label"], d["copy"])
        np.testing.assert_array_equal(d["label"], RandElasticLabelDeform().set_random_state(4)(vol))

    def test_prob_zero_and_missing_key(self):
        vol = block_labels()
        d = RandElasticLabelDeformd("label", prob=0.0)({"label": vol})
        np.testing.assert_array_equal(d["label"], vol)
        with self.assertRaises(KeyError):
            RandElasticLabelDeformd("label")({"image": vol})


class TestLabelsToMembranesd(unittest.TestCase):
    def test_output_key(self):
        vol = block_labels()
        d = LabelsToMembranesd("label", output_keys="membrane")({"label": vol})
        np.testing.assert_array_equal(d["label"], vol)
        np.testing.assert_array_equal(d["membrane"], LabelsToMembranes()(vol))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "LabelsToMembranesd.*output_keys"):
            LabelsToMembranesd(["a", "b"], output_keys="c")


class TestRandPlaceMitochondriad(unittest.TestCase):
    def test_array_parity(self):
        lib, labels = template_library(), ellipse_neurons()
        d = RandPlaceMitochondriad("label", lib, output_key="placed", **PLACE_KW).set_random_state(3)({"label": labels})
        expected = RandPlaceMitochondria(lib, **PLACE_KW).set_random_state(3)(labels)
        np.testing.assert_array_equal(d["placed"], expected)
        self.assertGreater(int(expected.sum()), 0)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "RandPlaceMitochondriad.*one key"):
            RandPlaceMitochondriad(["a", "b"], template_library(count=2))


class TestConditionToOneHotd(unittest.TestCase):
    def test_values(self):
        d = ConditionToOneHotd("condition")({"condition": np.array([[[2, 0, 1]]])})
        np.testing.assert_array_equal(d["condition"], [[[-1, -1, 1]], [[1, -1, -1]]])

    def test_error_names_file(self):
        data = {"condition": np.array([[[0, 7]]]), "condition_path": "/data/vol_003_condition.tif"}
        with self.assertRaisesRegex(ValueError, "ConditionToOneHot.*vol_003_condition.tif.*found \\[7\\]"):
            ConditionToOneHotd("condition")(data)
        meta = MetaTensor(torch.tensor([[[0, 9]]]), meta={"filename_or_obj": "/data/meta_cond.tif"})
        with self.assertRaisesRegex(ValueError, "meta_cond.tif"):
            ConditionToOneHotd("condition")({"condition": meta})


def neurons_and_mito():
    """Big elongated neurons on a membrane-free background neuron, plus a real-looking mito mask for the library."""
    labels = ellipse_neurons()
    labels[labels == 0] = 9  # a background neuron: everything is labelled
    labels[0, :, 62:66, 62:66] = 10  # a small neuron in the middle of neuron 1: its membrane ring lies under a mito
    mito = np.zeros((1, 6, 60, 60), dtype=np.uint8)
    for z in range(6):
        mito[0, z] = ellipse_mask((60, 60), (30, 30), (20, 7), 30.0 * z)
    return labels, mito


class TestRemodelMasksd(unittest.TestCase):
    def test_condition_composition_and_determinism(self):
        labels, mito = neurons_and_mito()
        make = lambda: RemodelMasksd(place=RandPlaceMitochondria(min_region_area=2000))  # noqa: E731
        a = make().set_random_state(42)({"label": labels, "mito": mito})
        b = make().set_random_state(42)({"label": labels, "mito": mito})
        np.testing.assert_array_equal(a["condition"], b["condition"])
        np.testing.assert_array_equal(a["label"], b["label"])
        self.assertEqual(a["condition"].dtype, np.uint8)
        self.assertEqual(set(np.unique(a["condition"])), {0, 1, 2})
        self.assertEqual(set(np.unique(a["label"])), set(np.unique(labels)))  # deformation keeps every neuron
        self.assertFalse(np.array_equal(a["label"], labels))
        membrane = LabelsToMembranes()(a["label"]).astype(bool)
        cond = a["condition"]
        np.testing.assert_array_equal(cond == 1, membrane & (cond != 2))  # membrane wherever no mitochondrion
        self.assertGreater(int(((cond == 2) & membrane).sum()), 0)  # mitochondria are drawn over membrane
        np.testing.assert_array_equal(a["mito"], mito)  # the real mask is only read

    def test_same_draws_as_the_steps(self):
        """One stream, deform first: the recipe equals the steps run by hand on a shared RandomState."""
        labels, _ = neurons_and_mito()
        lib = template_library()
        out = RemodelMasksd(library=lib, place=RandPlaceMitochondria(lib, **PLACE_KW)).set_random_state(5)(
            {"label": labels}
        )
        state = np.random.RandomState(5)
        deform, place = RandElasticLabelDeform(), RandPlaceMitochondria(lib, **PLACE_KW)
        deform.set_random_state(state=state)
        place.set_random_state(state=state)
        deformed = deform(labels)
        cond = LabelsToMembranes()(deformed)
        cond[place(deformed) > 0] = 2
        np.testing.assert_array_equal(out["condition"], cond)

    @parameterized.expand([("no_deform", False, True), ("no_mito", True, False)])
    def test_ablation_switches(self, _, deform, place):
        labels, mito = neurons_and_mito()
        out = RemodelMasksd(deform=deform, place=place).set_random_state(0)({"label": labels, "mito": mito})
        if not deform:
            np.testing.assert_array_equal(out["label"], labels)
        if not place:
            self.assertEqual(int((out["condition"] == 2).sum()), 0)

    def test_library_file_and_compose(self):
        labels, _ = neurons_and_mito()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "lib.npz")
            template_library().save(path)
            remodel = RemodelMasksd(place=RandPlaceMitochondria(path, **PLACE_KW))
            recipe = Compose([remodel, ConditionToOneHotd("condition")])
            recipe.set_random_state(1)
            out = recipe({"label": torch.as_tensor(labels)})
        self.assertEqual(tuple(out["condition"].shape), (2, *labels.shape[1:]))
        self.assertIsInstance(out["condition"], torch.Tensor)
        self.assertGreater(float((out["condition"][1] > 0).float().mean()), 0.0)

    def test_real_fibsem_neurons(self):
        tifffile = __import__("tifffile")
        labels = tifffile.imread(shared_or_skip(self, "fibsem_medulla_neurons_neuroproof/neuron_ids.tif"))
        labels = labels[:4, :160, :160]
        mito = tifffile.imread(shared_or_skip(self, "isbi2012_em/train-mito.tif"))[:4]
        placer = RandPlaceMitochondria(min_region_area=1500)  # a 160 x 160 crop has no 5000 px cross-section
        out = RemodelMasksd(place=placer).set_random_state(42)({"label": labels[None], "mito": mito[None]})
        ids, counts = np.unique(labels, return_counts=True)
        large = set(ids[counts >= 500].tolist())  # a 9-voxel sliver at the crop edge may be pushed out; neurons not
        self.assertTrue(large <= set(np.unique(out["label"]).tolist()))
        self.assertTrue(set(np.unique(out["label"]).tolist()) <= set(ids.tolist()))
        self.assertEqual(out["label"].dtype, labels.dtype)
        self.assertTrue(set(np.unique(out["condition"])) <= {0, 1, 2})
        self.assertGreater(int((out["condition"] == 2).sum()), 0)

    def test_errors(self):
        labels, _ = neurons_and_mito()
        with self.assertRaisesRegex(ValueError, "RemodelMasksd.*'mito'"):
            RemodelMasksd()({"label": labels})
        with self.assertRaisesRegex(TypeError, "RemodelMasksd.*deform"):
            RemodelMasksd(deform="yes")
        with self.assertRaisesRegex(KeyError, "RemodelMasksd"):
            RemodelMasksd(library=template_library(count=2))({"image": labels})


class TestLabelsToConditiond(unittest.TestCase):
    def test_membranes_then_mitochondria(self):
        from emdiff_components.transforms import LabelsToConditiond, LabelsToMembranes

        label = np.zeros((1, 2, 12, 12), np.int64)
        label[..., :6] = 1
        label[..., 6:] = 2
        mito = np.zeros_like(label, dtype=np.uint8)
        mito[..., 2:4, 8:10] = 1
        out = LabelsToConditiond()({"label": label, "mito": mito})
        membranes = LabelsToMembranes()(label)
        expected = np.where(mito > 0, 2, (np.asarray(membranes) > 0).astype(np.uint8))
        np.testing.assert_array_equal(out["condition"], expected)
        self.assertEqual(out["condition"].dtype, np.uint8)
        without = LabelsToConditiond()({"label": label})
        self.assertEqual(set(np.unique(without["condition"])), {0, 1})

    def test_shape_mismatch_names_the_file(self):
        from emdiff_components.transforms import LabelsToConditiond

        with self.assertRaisesRegex(ValueError, "LabelsToConditiond: 'mito' has shape .*lab.tif"):
            LabelsToConditiond()({"label": np.zeros((1, 2, 4, 4)), "mito": np.zeros((1, 2, 4, 5)),
                                  "label_path": "lab.tif"})


if __name__ == "__main__":
    unittest.main()
