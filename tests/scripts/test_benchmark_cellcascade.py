"""scripts/benchmark_cellcascade.py: the frame split, and the whole benchmark in its smoke mode on the HeLa frames
(a few steps of every stage, one seed): the table's structure and the counts that the data fix."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

from bundle_testing import load_script, shared_data_or_skip

from emdiff_components.data import ctc_datalist, read_image

benchmark = load_script("benchmark_cellcascade")


class TestBenchmarkCellCascade(unittest.TestCase):
    def test_split_and_quick_run(self):
        shared = shared_data_or_skip(self)
        with tempfile.TemporaryDirectory() as tmp:
            train, test = benchmark.split_frames(shared / "ctc_2d_nuclei" / "Fluo-N2DL-HeLa", Path(tmp) / "d", 1)
            self.assertEqual([e["num_cells"] for e in ctc_datalist(train)], [59])  # t13
            self.assertEqual([e["num_cells"] for e in ctc_datalist(test)], [109])  # t52, held back
            with self.assertRaisesRegex(ValueError, "held-out"):
                benchmark.split_frames(shared / "ctc_2d_nuclei" / "Fluo-N2DL-HeLa", Path(tmp) / "e", 2)

            out = Path(tmp) / "cc.json"
            result = benchmark.main(["--quick", "--threads", "1", "--out", str(out), "--work", str(Path(tmp) / "w"),
                                     "--shared", str(shared)])
            self.assertEqual(json.loads(out.read_text()), json.loads(json.dumps(result)))
            runs = result["segmentation"]["runs"]
            self.assertEqual([(r["condition"], r["seed"]) for r in runs], [("real only", 0), ("real + synthetic", 0)])
            for row in runs:
                self.assertEqual(row["num_truth"], 109)
                self.assertAlmostEqual(result["segmentation"]["summary"][row["condition"]]["seg"]["mean"], row["seg"])
            synthesis = result["synthesis"]
            self.assertEqual((synthesis["num_images"], synthesis["num_stacks"]), (2, 1))
            written = ctc_datalist(synthesis["synthetic_dir"])
            self.assertEqual([e["num_cells"] for e in written], synthesis["cells_per_image"])
            self.assertEqual(read_image(written[0]["image"]).shape, (512, 708))
            self.assertEqual(result["fid"]["num_real_cells"], 59)
            self.assertEqual(result["generator"]["train_masks.json"]["steps"], 4)


if __name__ == "__main__":
    unittest.main()
