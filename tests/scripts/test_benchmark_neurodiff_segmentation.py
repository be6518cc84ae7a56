"""scripts/benchmark_neurodiff_segmentation.py: Table 1 runs split across processes and joined again, the FID part's
missing-network error, and one tiny real-only run on the shared FIB-SEM stack."""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import unittest
from pathlib import Path

import numpy as np
import pytest
from bundle_testing import load_script

benchmark = load_script("benchmark_neurodiff_segmentation")


def _run(condition: str, seed: int, vi: float, arand: float) -> dict:
    score = {"vi_split": vi / 4, "vi_merge": 3 * vi / 4, "vi": vi, "arand": arand}
    return {"condition": condition, "seed": seed, "train": {"iterations": 10}, "scores": {"waterz": score}}


def _table(runs: list[dict], **settings) -> dict:
    table = {"label_fraction": 0.04, "iterations": 10, "patch": [16, 64, 64], "seeds": [], "runs": runs,
             "summary": {}, "paper": benchmark.PAPER}
    return {**table, **settings}


class TestMergeTables(unittest.TestCase):
    def test_runs_of_two_processes_summarized_together(self):
        real = _table([_run("real only", 0, 2.0, 0.5), _run("real only", 1, 3.0, 0.7)])
        generator = {"budget_minutes": 30.0, "iterations": 500}
        mixed = _table([_run("real + synthetic", 0, 1.0, 0.2)], generator=generator, copies=4)
        merged = benchmark.merge_tables([real, mixed])
        self.assertEqual(merged["seeds"], [0, 1])
        self.assertEqual((merged["generator"], merged["copies"]), (generator, 4))
        vi = merged["summary"]["real only / waterz"]["vi"]
        self.assertEqual(vi["values"], [2.0, 3.0])
        self.assertAlmostEqual(vi["mean"], 2.5)
        self.assertAlmostEqual(vi["std"], 0.5)  # population std of 2 and 3
        self.assertAlmostEqual(merged["summary"]["real only / waterz"]["vi_merge"]["mean"], 0.75 * 2.5)
        self.assertEqual(merged["summary"]["real + synthetic / waterz"]["arand"]["values"], [0.2])

    def test_mixed_settings_or_a_run_twice_refused(self):
        a = _table([_run("real only", 0, 2.0, 0.5)])
        with self.assertRaisesRegex(ValueError, "iterations differs"):
            benchmark.merge_tables([a, _table([_run("real only", 1, 2.0, 0.5)], iterations=20)])
        with self.assertRaisesRegex(ValueError, "real only, seed 0 is in two"):
            benchmark.merge_tables([a, a])
        g1 = _table([_run("real + synthetic", 0, 1.0, 0.2)], generator={"budget_minutes": 30.0, "iterations": 5})
        g2 = _table([_run("real + synthetic", 1, 1.0, 0.2)], generator={"budget_minutes": 60.0, "iterations": 9})
        with self.assertRaisesRegex(ValueError, "generators differ"):
            benchmark.merge_tables([g1, g2])


class TestFidNeedsTheRealOnlyNetwork(unittest.TestCase):
    def test_missing_network_named(self):
        with tempfile.TemporaryDirectory() as tmp:
            args = argparse.Namespace(seeds=[3])
            with self.assertRaisesRegex(FileNotFoundError, r"seg_real_3/models/segmentation/model\.pt is missing"):
                benchmark.fid(args, Path(tmp))


class TestTinyRealOnlyRun(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _shared(self, shared_data):
        self.shared = shared_data

    def test_real_only_needs_no_generator_and_merges(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            out = tmp / "real.json"
            benchmark.main(["--part", "table1", "--conditions", "real", "--no-fid", "--seeds", "0", "--iterations", "2",
                            "--patch", "16", "32", "32", "--methods", "waterz", "--threads", "2",
                            "--shared", str(self.shared), "--work", str(tmp / "work"), "--out", str(out)])
            self.assertFalse((tmp / "work" / "generator").exists())  # real only: no generator trained
            table = json.loads(out.read_text())["table1"]
            self.assertEqual([(r["condition"], r["seed"]) for r in table["runs"]], [("real only", 0)])
            run = json.loads((tmp / "work" / "seg_real_0" / "run.json").read_text())
            self.assertEqual(run, table["runs"][0])
            self.assertEqual(run["train"]["iterations"], 2)
            scores = run["scores"]["waterz"]
            self.assertTrue(all(math.isfinite(scores[k]) and scores[k] >= 0 for k in ("vi", "arand")), scores)
            self.assertAlmostEqual(scores["vi"], scores["vi_split"] + scores["vi_merge"], places=9)
            self.assertEqual(table["summary"]["real only / waterz"]["vi"]["values"], [scores["vi"]])
            # a second process's seed, joined
            other = {**table, "runs": [{**run, "seed": 1, "scores": {"waterz": {**scores, "vi": scores["vi"] + 1}}}]}
            (tmp / "other.json").write_text(json.dumps({"table1": other}))
            merged = benchmark.main(["--merge", str(out), str(tmp / "other.json"), "--out", str(tmp / "m.json")])
            vi = merged["table1"]["summary"]["real only / waterz"]["vi"]
            np.testing.assert_allclose(vi["mean"], scores["vi"] + 0.5)
            self.assertEqual(json.loads((tmp / "m.json").read_text())["table1"]["seeds"], [0, 1])


if __name__ == "__main__":
    unittest.main()
