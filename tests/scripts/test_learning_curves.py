"""scripts/learning_curves.py: argument errors, and one tiny end-to-end run (CPU-second marks, tiny widths, 2 steps)."""

from __future__ import annotations

import json
import math
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
from bundle_testing import load_script
from parameterized import parameterized

from emdiff_components.data import read_image, write_image
from emdiff_components.engines import TrainingProgress

REPO = Path(__file__).resolve().parents[2]


learning_curves = load_script("learning_curves")

BAD_ARGUMENTS = [
    ("unknown_model", ["--models", "unet3000"]),
    ("unknown_dataset", ["--datasets", "lucchi"]),
    ("unsorted_marks", ["--marks", "30", "10"]),
    ("repeated_marks", ["--marks", "10", "10"]),
    ("zero_mark", ["--marks", "0", "10"]),
    ("zero_steps", ["--steps", "0"]),
    ("covid_without_a_covid_model", ["--models", "ecsd", "--datasets", "covid"]),
    ("unknown_sampler", ["--samplers", "ddim"]),
]

# the smallest run that still goes through every kind of model and both pipelines (ECSD's on EM, BIEDSNet's on CT)
TINY = [
    "--models", "ecsd", "biedsnet", "basicunet", "--datasets", "isbi", "covid", "--marks", "0.03", "0.06",
    "--steps", "2", "--num-samples", "1", "--threads", "1", "--ecsd-channels", "8", "16", "32", "64",
    "--biedsnet-channels", "8", "16", "32", "64", "128", "--biedsnet-res-blocks", "1",
    "--basicunet-features", "8", "8", "16", "32", "64", "8", "--em-patch", "64", "--infer-patch", "64", "--ct-size", "64",
]
SIZE, TEST_SLICES = 64, 2


def _resize(array: np.ndarray, label: bool) -> np.ndarray:
    interpolation = cv2.INTER_NEAREST if label else cv2.INTER_AREA
    slices = [cv2.resize(a, (SIZE, SIZE), interpolation=interpolation) for a in array.reshape(-1, *array.shape[-2:])]
    return np.stack(slices).reshape(*array.shape[:-2], SIZE, SIZE)


def shrink(folder: Path) -> None:
    """Resize every image (area) and label (nearest) of an MSD-layout folder to ``SIZE`` x ``SIZE`` and keep
    ``TEST_SLICES`` test slices (stacks: the first; one slice per file: the first files with foreground), so that
    sampling takes seconds."""
    for split in ("Tr", "Ts"):
        kept = 0
        for path in sorted((folder / f"images{split}").iterdir()):
            label_path = folder / f"labels{split}" / path.name
            image, label = _resize(read_image(path), False), _resize(read_image(label_path), True)
            if split == "Ts" and image.ndim == 3:
                image, label = image[:TEST_SLICES], label[:TEST_SLICES]
            elif split == "Ts" and (kept >= TEST_SLICES or not label.any()):
                path.unlink()
                label_path.unlink()
                continue
            kept += 1
            write_image(path, np.ascontiguousarray(image))
            write_image(label_path, np.ascontiguousarray(label))


def pooled_dice_from_files(report: dict, masks: Path, labels: Path) -> float:
    """Foreground Dice pooled over the slices of an evaluate report, recounted from the written masks and labels."""
    tp = fp = fn = 0
    for entry in report["per_image"]:
        pred, truth = (read_image(next(p for p in f.iterdir() if p.name.split(".")[0] == entry["name"]))
                       for f in (masks, labels))
        if truth.ndim == 3:
            pred, truth = pred[entry["slice"]], truth[entry["slice"]]
        p, g = pred > 0, truth > 0
        tp, fp, fn = tp + int((p & g).sum()), fp + int((p & ~g).sum()), fn + int((~p & g).sum())
    return 2 * tp / (2 * tp + fp + fn)


class TestLearningCurvesArguments(unittest.TestCase):
    @parameterized.expand(BAD_ARGUMENTS)
    def test_bad_arguments_exit(self, _, argv):
        with self.assertRaises(SystemExit) as raised, mock.patch("sys.stderr"):
            learning_curves.parse_args(argv)
        self.assertEqual(raised.exception.code, 2)

    def test_defaults(self):
        args = learning_curves.parse_args([])
        self.assertEqual(args.marks, [10, 30, 60, 120, 240])
        self.assertEqual(args.models, list(learning_curves.MODELS))
        self.assertEqual(args.ecsd_channels, [16, 32, 64, 128])
        self.assertEqual(learning_curves.runs(learning_curves.parse_args(["--datasets", "epfl"])),
                         [(m, "isbi") for m in learning_curves.MODELS])
        self.assertEqual(learning_curves.runs(learning_curves.parse_args(["--datasets", "covid"])),
                         [("biedsnet", "covid"), ("basicunet", "covid")])


def _run(settings: dict, rows: list[tuple[str, str | None, str, float, float]]) -> dict:
    """A result as ``run`` writes it: ``rows`` of (model, sampler, data set, mark, dice)."""
    return {"settings": settings, "training": {f"{r[0]}_isbi": {"marks": []} for r in rows},
            "rows": [{"model": m, "sampler": s, "dataset": d, "mark_cpu_min": k, "dice": v, "iterations": 10}
                     for m, s, d, k, v in rows]}


class TestMerge(unittest.TestCase):
    def setUp(self):
        self.settings = vars(learning_curves.parse_args([]))

    def test_merges_runs_into_one_table(self):
        with tempfile.TemporaryDirectory() as tmp:
            a, b = Path(tmp) / "a.json", Path(tmp) / "b.json"
            a.write_text(json.dumps(_run(self.settings, [("ecsd", "bansal", "isbi", 3.0, 0.5)])))
            b.write_text(json.dumps(_run({**self.settings, "threads": 1}, [("basicunet", None, "isbi", 3.0, 0.75),
                                                                           ("basicunet", None, "isbi", 12.0, 0.8)])))
            with mock.patch("builtins.print") as printed:
                merged = learning_curves.main(["--merge", str(a), str(b), "--out", str(Path(tmp) / "m.json"),
                                               "--plot", str(Path(tmp) / "m.png")])
            self.assertEqual(json.loads((Path(tmp) / "m.json").read_text()), merged)
            self.assertEqual([s["file"] for s in merged["settings"]], [str(a), str(b)])
            self.assertEqual(sorted(merged["training"]), ["basicunet_isbi", "ecsd_isbi"])
            table = learning_curves.markdown_table(merged["rows"])
            self.assertIn("| ecsd (bansal) | isbi | 50.0 (10) |  |", table)
            self.assertIn("| basicunet | isbi | 75.0 (10) | 80.0 (10) |", table)
            caption = printed.call_args_list[0].args[0]
            self.assertIn("threads 2", caption)
            self.assertIn("threads 1", caption)  # each run's settings are stated

    def test_a_merged_table_takes_a_longer_run(self):
        with tempfile.TemporaryDirectory() as tmp:
            a, b, c = (Path(tmp) / f"{n}.json" for n in "abc")
            a.write_text(json.dumps(_run(self.settings, [("ecsd", "reference", "isbi", 3.0, 0.4)])))
            b.write_text(json.dumps(_run({**self.settings, "marks": [30.0]}, [("ecsd", "reference", "isbi", 30.0, 0.6)])))
            learning_curves.merge([a], c)
            merged = learning_curves.merge([c, b], Path(tmp) / "m.json")
            self.assertEqual([s["file"] for s in merged["settings"]], [str(a), str(b)])
            self.assertEqual(sorted(merged["training"]), ["ecsd_isbi", "ecsd_isbi (b)"])
            self.assertEqual([(r["mark_cpu_min"], r["dice"]) for r in merged["rows"]], [(3.0, 0.4), (30.0, 0.6)])

    def test_table_rows_in_declared_order(self):
        """Rows added by later runs (a data set scored later, a model added) sit with their model, not at the end."""
        rows = _run(self.settings, [("basicunet", None, "isbi", 3.0, 0.7), ("ecsd", "reference", "epfl", 3.0, 0.6),
                                    ("ecsd", "reference", "isbi", 3.0, 0.5), ("ecsd", "bansal", "epfl", 3.0, 0.4)])
        table = learning_curves.markdown_table(rows["rows"])
        labels = [line.split(" | ")[0:2] for line in table.splitlines()[2:]]
        self.assertEqual(labels, [["| ecsd (bansal)", "epfl"], ["| ecsd (reference)", "isbi"],
                                  ["| ecsd (reference)", "epfl"], ["| basicunet", "isbi"]])

    def test_the_same_row_in_two_runs_is_an_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            a = Path(tmp) / "a.json"
            a.write_text(json.dumps(_run(self.settings, [("ecsd", "bansal", "isbi", 3.0, 0.5)])))
            with self.assertRaisesRegex(ValueError, r"\('ecsd', 'bansal', 'isbi', 3.0, 0\) is in both"):
                learning_curves.merge([a, a], Path(tmp) / "m.json")

    def test_seeds_join_the_same_cells(self):
        """Runs of seeds 0 and 1: one line per model whose cells give the mean, then each seed's figure; the plot's
        line runs through the means."""
        with tempfile.TemporaryDirectory() as tmp:
            a, b = Path(tmp) / "a.json", Path(tmp) / "b.json"
            a.write_text(json.dumps(_run(self.settings, [("ecsd", "reference", "isbi", 3.0, 0.5),
                                                         ("ecsd", "reference", "isbi", 12.0, 0.6)])))
            b.write_text(json.dumps(_run({**self.settings, "seed": 1}, [("ecsd", "reference", "isbi", 3.0, 0.2),
                                                                        ("ecsd", "reference", "isbi", 12.0, 0.8)])))
            merged = learning_curves.merge([a, b], Path(tmp) / "m.json")
            self.assertEqual([r["seed"] for r in merged["rows"]], [0, 0, 1, 1])
            table = learning_curves.markdown_table(merged["rows"])
            self.assertEqual(table.splitlines()[2], "| ecsd (reference), seeds 0/1 | isbi | mean 35.0: 50.0 (10) / "
                                                    "20.0 (10) | mean 70.0: 60.0 (10) / 80.0 (10) |")
            image = learning_curves.plot(merged["rows"], Path(tmp) / "m.png")
            # panel 480 x 360, plot area x 50-465, y = 30 + (1 - dice) * 290; log axis: 3 -> x 50, 12 -> x 465
            colour = list(learning_curves._COLOURS[0])
            mid_x, mid_y = (50 + 465) // 2, round(30 + (1 - (0.35 + 0.70) / 2) * 290)
            self.assertTrue(any(list(image[mid_y + dy, mid_x]) == colour for dy in (-1, 0, 1)))
            bar_y = round(30 + (1 - 0.35) * 290)  # the bar at the mean of mark 3, left of the line's start
            self.assertIn(colour, [list(image[bar_y + dy, 50 - 6]) for dy in (-1, 0, 1)])
            seed_line_y = round(30 + (1 - (0.5 + 0.6) / 2) * 290)  # where a line through seed 0 alone would pass
            self.assertNotIn(colour, [list(image[seed_line_y + dy, mid_x]) for dy in (-1, 0, 1)])

    def test_a_row_without_its_seed_among_several_seeds_is_an_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            a, m = Path(tmp) / "a.json", Path(tmp) / "m.json"
            merged = _run(self.settings, [("ecsd", "bansal", "isbi", 3.0, 0.5)])
            merged["settings"] = [{**self.settings, "file": "x"}, {**self.settings, "seed": 1, "file": "y"}]
            a.write_text(json.dumps(merged))
            with self.assertRaisesRegex(ValueError, r"a.json has a row without its seed"):
                learning_curves.merge([a], m)


class TestMarkCheckpoints(unittest.TestCase):
    def test_saves_every_passed_mark_then_terminates(self):
        saved = []
        engine = mock.Mock()
        engine.state.iteration, engine.state.epoch = 1, 1
        handler = learning_curves.MarkCheckpoints([0.0, 0.0, 1e9], saved.append)
        handler._started(engine)
        handler(engine)  # two marks at 0 s are passed at once, the third is far
        self.assertEqual(saved, [0, 1])
        engine.terminate.assert_not_called()
        handler.marks_min[2] = 0.0
        engine.state.iteration = 2
        handler(engine)
        self.assertEqual(saved, [0, 1, 2])
        self.assertEqual([r["iterations"] for r in handler.records], [1, 1, 2])
        engine.terminate.assert_called_once()

    def test_probe_sizes_the_run_to_the_last_mark(self):
        """After ``probe`` iterations the expected total (last mark / CPU seconds per iteration) goes to the
        learning-rate schedule and to the progress line."""
        engine, sized = mock.Mock(), []
        engine.state.iteration, engine.state.epoch = 2, 1
        progress = TrainingProgress()
        handler = learning_curves.MarkCheckpoints([0.5, 1.0], lambda i: None, lambda e, n: sized.append(n), probe=2,
                                                  progress=progress)
        with mock.patch.object(learning_curves.time, "process_time", side_effect=[100.0, 101.5]):
            handler._started(engine)
            handler(engine)  # 1.5 CPU s for 2 iterations: 0.75 s each; the last mark, 60 s, is 80 iterations
        self.assertEqual(sized, [80])
        self.assertEqual(progress.total, 80)


class TestLearningCurvesEndToEnd(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _shared(self, shared_data):
        self.shared = shared_data

    def test_tiny_run(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            argv = [*TINY, "--work", str(tmp / "work"), "--out", str(tmp / "lc.json"), "--plot", str(tmp / "lc.png"),
                    "--shared", str(self.shared)]
            real_prepare = learning_curves.prepare_data

            def small_data(args):
                folders = real_prepare(args)
                for folder in folders.values():
                    shrink(folder)
                return folders

            with mock.patch.object(learning_curves, "prepare_data", small_data), mock.patch("builtins.print"):
                learning_curves.main(argv)
            result = json.loads((tmp / "lc.json").read_text())
            rows = result["rows"]
            expected = {("ecsd", s, "isbi", m) for s in ("bansal", "reference") for m in (0.03, 0.06)}
            expected |= {(model, None, d, m) for model in ("biedsnet", "basicunet") for d in ("isbi", "covid")
                         for m in (0.03, 0.06)}
            got = [(r["model"], r["sampler"], r["dataset"], r["mark_cpu_min"]) for r in rows]
            self.assertEqual(sorted(got, key=str), sorted(expected, key=str))  # one row each, no duplicates
            data = tmp / "work" / "data"
            for row in rows:
                self.assertTrue(math.isfinite(row["dice"]) and 0 <= row["dice"] <= 1, row)
                self.assertGreaterEqual(row["iterations"], 1)
                report = json.loads((Path(row["output_dir"]) / "metrics.json").read_text())
                self.assertEqual(row["dice"], report["pooled_dice"])
                recount = pooled_dice_from_files(report, Path(row["output_dir"]) / "masks",
                                                 data / row["dataset"] / "labelsTs")
                self.assertAlmostEqual(row["dice"], recount, places=6, msg=str(row))
            for run, trained in result["training"].items():  # later marks come after more CPU time and iterations
                records = trained["marks"]
                self.assertLess(records[0]["cpu_s"], records[1]["cpu_s"], run)
                self.assertLessEqual(records[0]["iterations"], records[1]["iterations"], run)
            # rescoring a checkpoint without training gives the row of the first scoring again (seeded sampling)
            first = next(r for r in rows if r["model"] == "ecsd" and r["sampler"] == "reference" and r["mark_cpu_min"] == 0.06)
            again = [*argv, "--rescore", str(tmp / "lc.json"), "--models", "ecsd", "--datasets", "isbi", "--marks", "0.06",
                     "--samplers", "reference", "--out", str(tmp / "again.json"), "--plot", str(tmp / "again.png")]
            with mock.patch.object(learning_curves, "prepare_data", lambda args: {"isbi": data / "isbi"}), \
                    mock.patch("builtins.print"):
                rescored = learning_curves.main(again)["rows"]
                with self.assertRaisesRegex(ValueError, r"--marks \[0.05\] are not all among the marks \[0.03, 0.06\]"):
                    learning_curves.main([*again[:-4], "--marks", "0.05", "--out", str(tmp / "x.json")])
            self.assertEqual([(r["mark_cpu_min"], r["sampler"], r["iterations"]) for r in rescored],
                             [(0.06, "reference", first["iterations"])])
            self.assertEqual(rescored[0]["dice"], first["dice"])
            # each run's record is also written beside its checkpoints, so a run stopped early can be rescored
            for name, trained in result["training"].items():
                self.assertEqual(json.loads((tmp / "work" / name / "training.json").read_text()), trained, name)
            at = again.index("--rescore") + 1
            from_work = [*again[:at], str(tmp / "work"), *again[at + 1:]]
            with mock.patch.object(learning_curves, "prepare_data", lambda args: {"isbi": data / "isbi"}), \
                    mock.patch("builtins.print"):
                self.assertEqual(learning_curves.main(from_work)["rows"][0]["dice"], first["dice"])
                with self.assertRaisesRegex(ValueError, r"ecsd_no_boundary_isbi/training.json does not exist"):
                    learning_curves.main([*from_work, "--models", "ecsd_no_boundary"])
            image = cv2.imread(str(tmp / "lc.png"))
            series = 4  # ecsd (bansal), ecsd (reference), biedsnet, basicunet
            self.assertEqual(image.shape, (360 + learning_curves.LEGEND_ROW * series + 10, 2 * 480, 3))
            self.assertLess(int(image.min()), 100)  # something was drawn


if __name__ == "__main__":
    unittest.main()
