from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest
from parameterized import parameterized

from emdiff_components.data import read_image, write_image


def _neuron_slabs(shape=(4, 96, 96), width=24):
    """Instance labels: vertical slabs of neurons (ids 1..4) with a one-voxel unlabelled gap between them."""
    label = np.zeros(shape, np.uint32)
    for i in range(shape[2] // width):
        label[:, :, i * width + 1 : (i + 1) * width] = i + 1
    return label


class TestRemodelVolumes:
    def _run(self, root, out, seed):
        from monai.transforms import Compose

        from emdiff_components.data import remodel_volumes
        from emdiff_components.transforms import LoadVolumed, RemodelMasksd

        transform = Compose([LoadVolumed("label", dtype="int64"), RemodelMasksd(place=False)])
        entries = [{"label": os.path.join(root, "lab.tif"), "name": "v", "voxel_size": (29.0, 6.0, 6.0)}]
        return remodel_volumes(entries, transform, out, copies=2, seed=seed)

    def test_layout_seeded_and_membranes_on_borders(self):
        with tempfile.TemporaryDirectory() as root:
            write_image(os.path.join(root, "lab.tif"), _neuron_slabs())
            first = self._run(root, os.path.join(root, "a"), seed=5)
            again = self._run(root, os.path.join(root, "b"), seed=5)
            assert [w["name"] for w in first] == ["v_r0", "v_r1"]
            conditions = [read_image(w["condition"]) for w in first]
            assert all(np.array_equal(c, read_image(w["condition"])) for c, w in zip(conditions, again))
            assert not np.array_equal(conditions[0], conditions[1])  # the copies differ
            label = read_image(first[0]["label"])
            assert label.dtype == np.uint32 and set(np.unique(label)) - {0} == {1, 2, 3, 4}  # neurons kept
            assert set(np.unique(conditions[0])) <= {0, 1}  # no mitochondria placed (place=False)
            borders = np.zeros(label.shape, bool)
            borders[:, :, 1:] |= label[:, :, 1:] != label[:, :, :-1]
            assert conditions[0][borders].min() == 1  # every label border is membrane
            summary = json.loads(open(os.path.join(root, "a", "dataset.json")).read())
            assert summary["voxel_size"] == [29.0, 6.0, 6.0] and summary["numTraining"] == 2

    def test_bad_arguments(self):
        from emdiff_components.data import remodel_volumes

        with pytest.raises(ValueError, match="remodel_volumes: copies"):
            remodel_volumes([{"label": "x"}], None, "out", copies=0)
        with pytest.raises(ValueError, match="remodel_volumes: the datalist is empty"):
            remodel_volumes([], None, "out")


class TestConditionDatalist:
    def test_folder_and_file(self):
        from emdiff_components.data import condition_datalist

        with tempfile.TemporaryDirectory() as root:
            for name in ("c10", "c2"):
                write_image(os.path.join(root, f"{name}.tif"), np.array([[[0, 1], [2, 0]]] * 2, np.uint8))
            entries = condition_datalist(root)
            assert [e["name"] for e in entries] == ["c2", "c10"]
            assert condition_datalist(os.path.join(root, "c2.tif"))[0]["condition"].endswith("c2.tif")

    @parameterized.expand([
        ("values", np.full((2, 4, 4), 3, np.uint8), None, r"c\.tif' has values \[3\]"),
        ("flat", np.zeros((4, 4), np.uint8), None, "a 2D image"),
        ("small", np.zeros((2, 4, 4), np.uint8), (4, 4, 4), r"shape \(2, 4, 4\), smaller than \(4, 4, 4\)"),
    ])
    def test_errors(self, _, volume, min_shape, message):
        from emdiff_components.data import DatasetError, condition_datalist

        with tempfile.TemporaryDirectory() as root:
            write_image(os.path.join(root, "c.tif"), volume)
            with pytest.raises(DatasetError, match=message):
                condition_datalist(root, min_shape=min_shape)
