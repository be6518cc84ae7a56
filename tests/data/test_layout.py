from __future__ import annotations

import json
import os
import tempfile
import unittest

import numpy as np
from parameterized import parameterized

from emdiff_components.data import (
    DatasetError,
    download_file,
    labelled_datalist,
    list_images,
    match_cases,
    read_image,
    segmentation_datalist,
    sha256sum,
    single_file_datalist,
    strip_extension,
    write_dataset_json,
    write_image,
    write_layout,
)


def _png_layout(root, names=("case2", "case10", "case1"), label_values=(0, 1)):
    """2D PNG layout; names deliberately out of natural order."""
    for i, name in enumerate(names):
        write_image(os.path.join(root, "imagesTr", f"{name}.png"), np.full((6, 8), 10 * i, np.uint8))
        label = np.zeros((6, 8), np.uint8)
        label[:3] = label_values[-1]
        write_image(os.path.join(root, "labelsTr", f"{name}.png"), label)


def _stack_layout(root, depth=3):
    write_image(os.path.join(root, "imagesTr", "vol_0000.tif"), np.zeros((depth, 6, 8), np.uint8))
    write_image(os.path.join(root, "labelsTr", "vol.tif"), np.ones((depth, 6, 8), np.uint8))


# (case name, slices argument, kept slice indices of a 5-slice stack)
SLICE_CASES = [
    ("none", None, [0, 1, 2, 3, 4]),
    ("range", "1-3", [1, 2, 3]),
    ("mixed", "0, 3-4", [0, 3, 4]),
    ("list", [4, 0, 4], [0, 4]),
    ("single", "2", [2]),
]

def _missing_label(root):
    write_image(os.path.join(root, "imagesTr", "a.png"), np.zeros((4, 4), np.uint8))
    os.makedirs(os.path.join(root, "labelsTr"))


def _label_without_image(root):
    _png_layout(root, names=("a",))
    write_image(os.path.join(root, "labelsTr", "b.png"), np.zeros((6, 8), np.uint8))


def _unreadable(root):
    _png_layout(root, names=("a",))
    with open(os.path.join(root, "imagesTr", "a.png"), "wb") as handle:
        handle.write(b"garbage")


def _nan_image(root):
    write_image(os.path.join(root, "imagesTr", "a.npy"), np.array([[np.nan, 0.0], [0.0, 0.0]]))
    write_image(os.path.join(root, "labelsTr", "a.npy"), np.zeros((2, 2), np.uint8))


def _ct_volume(root, foreground_slices=(1, 3)):
    """A 5-slice NIfTI CT volume whose label has foreground on ``foreground_slices`` only."""
    write_image(os.path.join(root, "imagesTr", "ct.nii.gz"), np.full((5, 6, 8), -1000, np.int16))
    label = np.zeros((5, 6, 8), np.uint8)
    for z in foreground_slices:
        label[z, 2:4, 2:5] = 1
    write_image(os.path.join(root, "labelsTr", "ct.nii.gz"), label)


# (case name, writer(root), slices argument, fragment of the DatasetError message)
ERROR_CASES = [
    ("missing_folder", lambda root: None, None, "missing folder"),
    ("empty_folder", lambda root: os.makedirs(os.path.join(root, "imagesTr")), None, "empty dataset folder"),
    ("missing_label", _missing_label, None, "a.png' has no label"),
    ("label_without_image", _label_without_image, None, "b.png' has no matching image"),
    ("unreadable", _unreadable, None, "cannot use image .*a.png"),
    ("nan_image", _nan_image, None, "a.npy' holds 1 NaN"),
    ("out_of_range_slices", _stack_layout, "0-3", "vol_0000.tif' has only 3 slices"),
    ("volume_without_lesion", lambda root: _ct_volume(root, ()), "labelled", "ct.nii.gz' has no foreground in any of"),
]


BAD_ARGS = [("zero_classes", {"num_classes": 1}), ("bad_slices", {"slices": "3-1"}), ("junk", {"slices": "a"})]


STRIP_CASES = [
    ("a.nii.gz", "a"),
    ("A.NII.GZ", "A"),
    ("case.v2.tif", "case.v2"),
    ("x.tiff", "x"),
    ("x.h5", "x"),
    ("notes.txt", None),
    ("archive.gz", None),
]

# (name, image stems, other stems, expected case -> image stem)
MATCH_CASES = [
    ("suffix_dropped", ["a_0000", "b_0000"], ["a", "b"], {"a": "a_0000", "b": "b_0000"}),
    ("suffix_kept_when_label_has_it", ["a_0000"], ["a_0000"], {"a_0000": "a_0000"}),
    ("plain", ["b", "a"], ["a"], {"b": "b", "a": "a"}),
    ("no_labels", ["c_0000"], [], {"c": "c_0000"}),
]


class TestStripExtension(unittest.TestCase):
    @parameterized.expand(STRIP_CASES)
    def test_values(self, filename, expected):
        self.assertEqual(strip_extension(filename), expected)


class TestListImages(unittest.TestCase):
    def test_natural_order_and_filter(self):
        with tempfile.TemporaryDirectory() as root:
            for name in ("c10.tif", "c2.png", "C1.nii.gz", ".hidden.tif", "readme.txt"):
                with open(os.path.join(root, name), "wb") as handle:
                    handle.write(b"")
            os.makedirs(os.path.join(root, "sub.tif"))
            found = list_images(root)
        self.assertEqual(list(found.items()), [("C1", "C1.nii.gz"), ("c2", "c2.png"), ("c10", "c10.tif")])

    def test_same_stem_names_owner(self):
        with tempfile.TemporaryDirectory() as root:
            for name in ("a.tif", "a.png"):
                with open(os.path.join(root, name), "wb") as handle:
                    handle.write(b"")
            message = r"^my_reader: '.*a\.png' and 'a\.tif' have the same name 'a'; keep one\.$"
            with self.assertRaisesRegex(DatasetError, message):
                list_images(root, owner="my_reader")


class TestMatchCases(unittest.TestCase):
    @parameterized.expand(MATCH_CASES)
    def test_values(self, _, images, others, expected):
        result = match_cases({s: f"{s}.tif" for s in images}, others, "imagesTr", "owner")
        self.assertEqual(result, expected)
        self.assertEqual(list(result), list(expected))  # the image order is kept

    def test_two_images_one_case(self):
        with self.assertRaisesRegex(DatasetError, r"^owner: images 'a\.tif' and 'a_0000\.tif' in 'imagesTr' both map"):
            match_cases({"a": "a.tif", "a_0000": "a_0000.tif"}, [], "imagesTr", "owner")


class TestSegmentationDatalist(unittest.TestCase):
    def test_png_entries_and_order(self):
        with tempfile.TemporaryDirectory() as root:
            _png_layout(root)
            entries = segmentation_datalist(root)
        self.assertEqual([e["name"] for e in entries], ["case1", "case2", "case10"])
        first = entries[0]
        self.assertEqual(first, {
            "image": os.path.join(os.path.abspath(root), "imagesTr", "case1.png"),
            "label": os.path.join(os.path.abspath(root), "labelsTr", "case1.png"),
            "slice": 0,
            "num_slices": 1,
            "name": "case1",
        })

    def test_stack_with_nnunet_suffix(self):
        with tempfile.TemporaryDirectory() as root:
            _stack_layout(root)
            entries = segmentation_datalist(root)
        self.assertEqual([(e["slice"], e["num_slices"], e["name"]) for e in entries], [(z, 3, "vol") for z in range(3)])
        self.assertTrue(entries[0]["image"].endswith("vol_0000.tif"))
        self.assertTrue(entries[0]["label"].endswith("vol.tif"))

    @parameterized.expand(SLICE_CASES)
    def test_slices_filter(self, _, slices, expected):
        with tempfile.TemporaryDirectory() as root:
            _stack_layout(root, depth=5)
            _png_layout(root, names=("flat",))  # 2D files are not stacks: the filter leaves them alone
            entries = segmentation_datalist(root, slices=slices)
        self.assertEqual([e["slice"] for e in entries if e["name"] == "vol"], expected)
        self.assertEqual([e["slice"] for e in entries if e["name"] == "flat"], [0])

    def test_labelled_slices_of_a_ct_volume(self):
        with tempfile.TemporaryDirectory() as root:
            _ct_volume(root, foreground_slices=(3, 1))
            _png_layout(root, names=("flat",))  # 2D files are kept as they are
            entries = segmentation_datalist(root, slices="labelled")
        found = [(e["name"], e["slice"], e["num_slices"]) for e in entries]
        self.assertEqual(found, [("ct", 1, 5), ("ct", 3, 5), ("flat", 0, 1)])

    def test_labelled_datalist_leaves_out_volume_without_lesion(self):
        with tempfile.TemporaryDirectory() as root:
            _ct_volume(root, foreground_slices=(3, 1))
            write_image(os.path.join(root, "imagesTr", "empty.nii.gz"), np.full((5, 6, 8), -1000, np.int16))
            write_image(os.path.join(root, "labelsTr", "empty.nii.gz"), np.zeros((5, 6, 8), np.uint8))
            with self.assertLogs("emdiff_components.data.layout", level="WARNING") as logs:
                entries, unlabelled = labelled_datalist(root, split="Tr")
            self.assertEqual([(e["name"], e["slice"]) for e in entries], [("ct", 1), ("ct", 3)])
            self.assertEqual(unlabelled, ["empty"])
            self.assertIn("labelsTr/empty.nii.gz", logs.output[0])
            with self.assertRaisesRegex(DatasetError, "empty.nii.gz' has no foreground"):  # the strict one still raises
                segmentation_datalist(root, slices="labelled")
            os.remove(os.path.join(root, "imagesTr", "ct.nii.gz"))
            os.remove(os.path.join(root, "labelsTr", "ct.nii.gz"))
            with self.assertRaisesRegex(DatasetError, "no slices left"):  # nothing to score at all
                labelled_datalist(root, split="Tr")

    def test_labelled_needs_labels(self):
        with tempfile.TemporaryDirectory() as root:
            write_image(os.path.join(root, "imagesTs", "t.tif"), np.zeros((2, 4, 4), np.float32))
            with self.assertRaisesRegex(DatasetError, "labelled' needs a label for image .*t.tif"):
                segmentation_datalist(root, split="Ts", require_labels=False, slices="labelled")

    def test_binary_0_255_accepted_and_multiclass(self):
        with tempfile.TemporaryDirectory() as root:
            _png_layout(root, names=("a",), label_values=(0, 255))
            self.assertEqual(len(segmentation_datalist(root, num_classes=2)), 1)
            with self.assertRaisesRegex(DatasetError, r"values \[255\] outside the expected range 0\.\.2"):
                segmentation_datalist(root, num_classes=3)

    def test_ts_split_without_labels(self):
        with tempfile.TemporaryDirectory() as root:
            write_image(os.path.join(root, "imagesTs", "t.tif"), np.zeros((2, 4, 4), np.float32))
            entries = segmentation_datalist(root, split="Ts", require_labels=False)
            self.assertEqual([("label" in e, e["slice"]) for e in entries], [(False, 0), (False, 1)])
            with self.assertRaisesRegex(DatasetError, "labelsTs"):
                segmentation_datalist(root, split="Ts")

    @parameterized.expand(ERROR_CASES)
    def test_dataset_errors(self, _, writer, slices, fragment):
        with tempfile.TemporaryDirectory() as root:
            writer(root)
            with self.assertRaisesRegex(DatasetError, fragment):
                segmentation_datalist(root, slices=slices)

    def test_shape_mismatch_names_both_shapes(self):
        with tempfile.TemporaryDirectory() as root:
            write_image(os.path.join(root, "imagesTr", "a.tif"), np.zeros((3, 6, 8), np.uint8))
            write_image(os.path.join(root, "labelsTr", "a.tif"), np.zeros((3, 6, 7), np.uint8))
            pattern = r"a\.tif' has shape \(3, 6, 8\) but label .*a\.tif' has shape \(3, 6, 7\)"
            with self.assertRaisesRegex(DatasetError, pattern):
                segmentation_datalist(root)

    def test_label_values_outside_classes(self):
        with tempfile.TemporaryDirectory() as root:
            _png_layout(root, names=("a",), label_values=(0, 7))
            pattern = r"labelsTr/a\.png' has values \[7\] outside the expected range 0\.\.1"
            with self.assertRaisesRegex(DatasetError, pattern):
                segmentation_datalist(root)
            self.assertEqual(segmentation_datalist(root, num_classes=8)[0]["name"], "a")

    @parameterized.expand(BAD_ARGS)
    def test_bad_arguments(self, _, kwargs):
        with tempfile.TemporaryDirectory() as root:
            _png_layout(root)
            with self.assertRaisesRegex(ValueError, "segmentation_datalist"):
                segmentation_datalist(root, **kwargs)


class TestDatasetError(unittest.TestCase):
    def test_is_value_error_with_path(self):
        self.assertTrue(issubclass(DatasetError, ValueError))
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaisesRegex(ValueError, os.path.join(os.path.abspath(root), "imagesTr")):
                segmentation_datalist(root)


class TestSingleFileDatalist(unittest.TestCase):
    def test_entries(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "in.nii.gz")
            write_image(path, np.zeros((2, 4, 5), np.float32))
            entries = single_file_datalist(path)
        self.assertEqual(entries, [
            {"image": path, "slice": 0, "num_slices": 2, "name": "in"},
            {"image": path, "slice": 1, "num_slices": 2, "name": "in"},
        ])

    def test_hdf5_dataset_path(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "vol.h5") + ":/g/raw"
            write_image(path, np.zeros((3, 4, 5), np.uint8))
            entries = single_file_datalist(path)
        self.assertEqual([(e["name"], e["slice"], e["image"]) for e in entries], [("vol", z, path) for z in range(3)])

    def test_errors(self):
        with self.assertRaisesRegex(DatasetError, "does not exist"):
            single_file_datalist("/nonexistent/in.tif")
        with self.assertRaisesRegex(DatasetError, "unsupported file"):
            single_file_datalist("/nonexistent/in.xyz")


class TestWriteLayout(unittest.TestCase):
    def test_round_trip_and_dataset_json(self):
        image = np.arange(2 * 5 * 6, dtype=np.uint8).reshape(2, 5, 6)
        label = (image % 3 == 0).astype(np.uint8)
        with tempfile.TemporaryDirectory() as root:
            image_path, label_path = write_layout(root, "Tr", "v", image, label)
            write_layout(root, "Ts", "w", image[:1])
            np.testing.assert_array_equal(read_image(image_path), image)
            np.testing.assert_array_equal(read_image(label_path), label)
            doc = json.load(open(write_dataset_json(root, "toy", {"background": 0, "thing": 1})))
            entries = segmentation_datalist(root)
        self.assertEqual(doc["labels"], {"0": "background", "1": "thing"})
        self.assertEqual(doc["training"], [{"image": "./imagesTr/v.tif", "label": "./labelsTr/v.tif"}])
        self.assertEqual(doc["test"], ["./imagesTs/w.tif"])
        self.assertEqual(doc["numTest"], 1)
        self.assertEqual(len(entries), 2)

    def test_errors(self):
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaisesRegex(ValueError, r"write_layout: image shape \(2, 3\) and label shape \(3, 3\)"):
                write_layout(root, "Tr", "a", np.zeros((2, 3)), np.zeros((3, 3)))
            with self.assertRaisesRegex(ValueError, "plain, non-hidden"):
                write_layout(root, "Tr", ".hidden", np.zeros((2, 3)))


class TestDownloadFile(unittest.TestCase):
    def test_file_url_and_checksum(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "src.bin")
            with open(src, "wb") as handle:
                handle.write(b"abc")
            # SHA-256("abc"), a published test vector (FIPS 180-2)
            digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            self.assertEqual(sha256sum(src), digest)
            dest = download_file("file://" + src, os.path.join(tmp, "out", "dest.bin"), sha256=digest)
            self.assertEqual(open(dest, "rb").read(), b"abc")
            with self.assertRaisesRegex(ValueError, "expected 0000"):
                download_file("file://" + src, os.path.join(tmp, "bad.bin"), sha256="0" * 64)
            self.assertFalse(any(name.startswith("bad.bin") for name in os.listdir(tmp)))
