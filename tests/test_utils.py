from __future__ import annotations

import os
import tempfile
import unittest
from pathlib import Path

from parameterized import parameterized

from emdiff_components.utils import (
    atomic_write,
    check_positive_ints,
    check_voxel_size,
    is_positive_int,
    natural_sort_key,
)

SORT_CASES = [
    (["img10.tif", "img2.tif", "img1.tif"], ["img1.tif", "img2.tif", "img10.tif"]),
    (["Case_B", "case_a", "CASE_C"], ["case_a", "Case_B", "CASE_C"]),
    (["s1_z10", "s1_z9", "s10_z1", "s2_z1"], ["s1_z9", "s1_z10", "s2_z1", "s10_z1"]),
    (["b", "a2", "a10", "a"], ["a", "a2", "a10", "b"]),
]

VOXEL_OK = [
    ((29, 6, 6), (29.0, 6.0, 6.0)),
    ([40, 4], (40.0, 4.0, 4.0)),
    ((0.5, 1.25, 2), (0.5, 1.25, 2.0)),
]

VOXEL_BAD = [
    (None,),
    (5,),
    ((1,),),
    ((1, 2, 3, 4),),
    ((29, 0, 6),),
    ((29, -6, 6),),
    ((float("nan"), 6, 6),),
    ((float("inf"), 6),),
    (("a", 6, 6),),
    ("29",),
    ("29,6,6",),
]


class TestNaturalSortKey(unittest.TestCase):
    @parameterized.expand(SORT_CASES)
    def test_order(self, names, expected):
        self.assertEqual(sorted(names, key=natural_sort_key), expected)

    def test_key_values(self):
        self.assertEqual(natural_sort_key("Img12b3"), ["img", 12, "b", 3, ""])


class TestCheckVoxelSize(unittest.TestCase):
    @parameterized.expand(VOXEL_OK)
    def test_accepted(self, value, expected):
        result = check_voxel_size(value, "owner")
        self.assertEqual(result, expected)
        self.assertTrue(all(type(v) is float for v in result))

    @parameterized.expand(VOXEL_BAD)
    def test_refused(self, value):
        with self.assertRaisesRegex(ValueError, r"^MyReader: voxel_size must be 3 positive numbers \(z, y, x\) or 2"):
            check_voxel_size(value, "MyReader")


class TestAtomicWrite(unittest.TestCase):
    def setUp(self):
        self._dir = tempfile.TemporaryDirectory()
        self.root = Path(self._dir.name)

    def tearDown(self):
        self._dir.cleanup()

    def test_writes_and_creates_folder(self):
        target = self.root / "a" / "b" / "out.json"
        with atomic_write(target) as tmp:
            self.assertEqual(tmp.parent, target.parent)
            self.assertFalse(tmp.exists())
            self.assertTrue(tmp.name.startswith(".out.json.") and tmp.name.endswith(".json"), tmp.name)
            tmp.write_text("new")
        self.assertEqual(target.read_text(), "new")
        self.assertEqual(sorted(p.name for p in target.parent.iterdir()), ["out.json"])

    def test_keeps_all_suffixes(self):
        with atomic_write(self.root / "vol.nii.gz") as tmp:
            self.assertTrue(tmp.name.endswith(".nii.gz"), tmp.name)
            tmp.write_bytes(b"x")

    def test_error_keeps_old_file_and_leaves_no_temp(self):
        target = self.root / "out.txt"
        target.write_text("old")
        with self.assertRaisesRegex(RuntimeError, "killed"):
            with atomic_write(target) as tmp:
                tmp.write_text("half")
                raise RuntimeError("killed")
        self.assertEqual(target.read_text(), "old")
        self.assertEqual([p.name for p in self.root.iterdir()], ["out.txt"])

    def test_error_before_writing_leaves_nothing(self):
        target = self.root / "never.txt"
        with self.assertRaises(KeyboardInterrupt):
            with atomic_write(target):
                raise KeyboardInterrupt
        self.assertEqual(list(self.root.iterdir()), [])

    def test_keep_existing_copies(self):
        target = self.root / "data.bin"
        target.write_bytes(b"first|")
        os.chmod(target, 0o640)
        with atomic_write(target, keep_existing=True) as tmp:
            self.assertEqual(tmp.read_bytes(), b"first|")
            with open(tmp, "ab") as handle:
                handle.write(b"second")
            self.assertEqual(target.read_bytes(), b"first|")  # the final file is untouched until the end
        self.assertEqual(target.read_bytes(), b"first|second")
        self.assertEqual(os.stat(target).st_mode & 0o777, 0o640)
        self.assertEqual([p.name for p in self.root.iterdir()], ["data.bin"])

    def test_keep_existing_without_file(self):
        target = self.root / "new.bin"
        with atomic_write(target, keep_existing=True) as tmp:
            self.assertFalse(tmp.exists())
            tmp.write_bytes(b"x")
        self.assertEqual(target.read_bytes(), b"x")

    def test_keep_existing_error_keeps_old(self):
        target = self.root / "data.bin"
        target.write_bytes(b"old")
        with self.assertRaises(ValueError):
            with atomic_write(target, keep_existing=True) as tmp:
                tmp.write_bytes(b"corrupt")
                raise ValueError
        self.assertEqual(target.read_bytes(), b"old")
        self.assertEqual([p.name for p in self.root.iterdir()], ["data.bin"])



class TestPositiveInts(unittest.TestCase):
    @parameterized.expand([("one", 1, True), ("big", 10**9, True), ("zero", 0, False), ("negative", -3, False),
                           ("bool", True, False), ("float", 2.0, False), ("text", "2", False)])
    def test_is_positive_int(self, _, value, expected):
        self.assertIs(is_positive_int(value), expected)

    def test_check_names_owner_and_argument(self):
        check_positive_ints("Net", channels=4, heads=1)
        with self.assertRaisesRegex(ValueError, r"^Net: heads must be a positive int, got 0\.$"):
            check_positive_ints("Net", channels=4, heads=0)


if __name__ == "__main__":
    unittest.main()
