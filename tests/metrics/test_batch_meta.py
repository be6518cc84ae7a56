"""Tests of filename_meta, MetricsSaver's batch transform for items named by a key."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import torch
from ignite.engine import Engine
from monai.handlers import MeanAbsoluteError, MetricsSaver

from emdiff_components.metrics import filename_meta


class TestFilenameMeta(unittest.TestCase):
    def test_values(self):
        batch = [{"name": "isbi_a", "pred": 1}, {"name": "isbi_b", "pred": 2}]
        self.assertEqual(filename_meta(batch), [{"filename_or_obj": "isbi_a"}, {"filename_or_obj": "isbi_b"}])
        self.assertEqual(filename_meta([{"case": 7}], key="case"), [{"filename_or_obj": "7"}])
        self.assertEqual(filename_meta([]), [])

    def test_missing_key(self):
        with self.assertRaisesRegex(KeyError, r"filename_meta.*\[1\].*'name'"):
            filename_meta([{"name": "a"}, {"other": "b"}])

    def test_names_the_rows_of_metrics_saver(self):
        # per-image rows of MetricsSaver carry the item names: |1 - 0| = 1 for a, |3 - 1| = 2 for b
        batches = [[{"name": "a", "pred": torch.ones(1, 2), "label": torch.zeros(1, 2)}],
                   [{"name": "b", "pred": torch.full((1, 2), 3.0), "label": torch.ones(1, 2)}]]

        def step(engine, batch):
            return batch

        engine = Engine(step)
        mae = MeanAbsoluteError(output_transform=lambda out: ([o["pred"] for o in out], [o["label"] for o in out]),
                                save_details=True)
        mae.attach(engine, "mae")
        with tempfile.TemporaryDirectory() as tmp:
            MetricsSaver(save_dir=tmp, metrics="*", metric_details="*", batch_transform=filename_meta).attach(engine)
            engine.run(batches)
            rows = (Path(tmp) / "mae_raw.csv").read_text().splitlines()
        self.assertEqual([row.split(",")[0] for row in rows[1:]], ["a", "b"])
        self.assertEqual([float(row.split(",")[1]) for row in rows[1:]], [1.0, 2.0])


if __name__ == "__main__":
    unittest.main()
