"""scripts/benchmark_side_by_side.py without the public code: arguments, our network in a subprocess, the table."""

from __future__ import annotations

import io
import tempfile
import unittest
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import torch
from bundle_testing import load_script
from parameterized import parameterized
from torch.utils.flop_counter import FlopCounterMode

from emdiff_components.networks import ECSDUNet

REPO = Path(__file__).resolve().parents[2]


side_by_side = load_script("benchmark_side_by_side")

# (name, argv, part of the error message); the checkout folders are taken as valid here
BAD_ARGUMENTS = [
    ("unknown_part", ["--parts", "ecsd_sampling"], "invalid choice"),
    ("zero_repeats", ["--parts", "ecsd_forward", "--cold-segdiffusion", ".", "--repeats", "0"], "--repeats"),
    ("zero_threads", ["--neurodiff", ".", "--cold-segdiffusion", ".", "--threads", "0"], "--threads"),
    ("size_not_multiple_of_8", ["--parts", "ecsd_train", "--cold-segdiffusion", ".", "--ecsd-train-sizes", "60"],
     "multiples of 8"),
    ("zero_depth", ["--parts", "neurodiff_forward", "--neurodiff", ".", "--neurodiff-shape", "0", "32", "32"],
     "--neurodiff-shape"),
    ("zero_tolerance", ["--parts", "ecsd_forward", "--cold-segdiffusion", ".", "--tolerance", "0"], "--tolerance"),
    ("ecsd_without_its_checkout", ["--parts", "ecsd_forward"], "--cold-segdiffusion is required"),
    ("neurodiff_without_its_checkout", ["--parts", "neurodiff_train", "--cold-segdiffusion", "."],
     "--neurodiff is required"),
]

# an ECSDUNet small enough to build and run in a second: 4 levels of 8..64 channels at 32 x 32
TINY_ECSD = {"model": "ecsd", "dim": 8, "size": 32, "batch": 1, "task": "forward", "cold_segdiffusion": None}


def _parse_error(argv: list[str]) -> str:
    """The usage error ``parse_args(argv)`` exits with (code 2)."""
    with mock.patch("sys.stderr", new_callable=io.StringIO) as stderr:
        try:
            side_by_side.parse_args(argv)
        except SystemExit as exit_:
            if exit_.code != 2:
                raise AssertionError(f"exit code {exit_.code}") from None
            return stderr.getvalue()
    raise AssertionError(f"{argv} was accepted")


def _any_folder_is_a_checkout():
    return mock.patch.object(side_by_side, "checkout_error", return_value=None)


class TestArguments(unittest.TestCase):
    @parameterized.expand(BAD_ARGUMENTS)
    def test_bad_arguments_exit(self, _, argv, message):
        with _any_folder_is_a_checkout():
            self.assertIn(message, _parse_error(argv))

    def test_folder_without_segdiffusion_py_is_named(self):
        with tempfile.TemporaryDirectory() as folder:
            message = _parse_error(["--parts", "ecsd_forward", "--cold-segdiffusion", folder])
            self.assertIn(folder, message)
            self.assertIn("no SegDiffusion.py", message)
            with self.assertRaisesRegex(FileNotFoundError, f"{folder}.*no SegDiffusion.py"):
                side_by_side.load_cold_segdiffusion(folder)
            with self.assertRaisesRegex(FileNotFoundError, f"{folder}.*no diffusion_model/neurodiff.py"):
                side_by_side.load_neurodiff(folder)

    def test_defaults_plan_the_issue_sizes(self):
        with _any_folder_is_a_checkout():
            cases = side_by_side.configs(side_by_side.parse_args(["--cold-segdiffusion", ".", "--neurodiff", "."]))
        self.assertEqual(
            [(c["part"], c["case"]) for c in cases],
            [
                ("ecsd_forward", "512 x 512 batch 1"),
                ("ecsd_train", "256 x 256 batch 2"),
                ("ecsd_train", "512 x 512 batch 2"),
                ("neurodiff_forward", "8 x 128 x 128 batch 1"),
                ("neurodiff_train", "8 x 128 x 128 batch 1"),
            ],
        )
        # training ECSD: ours with and without use_checkpointing; everything else one variant of ours
        self.assertEqual([[o["use_checkpointing"] for o in c["ours"]] for c in cases],
                         [[False], [False, True], [False, True], [False], [False]])
        self.assertEqual(cases[0]["config"]["dim"], 64)
        self.assertEqual(cases[3]["config"]["channel_mult"], [0.5, 1, 1, 2, 2, 4, 4])


class TestPerturbation(unittest.TestCase):
    def test_only_constant_tensors_move(self):
        state = {"norm.weight": torch.ones(4), "zero.bias": torch.zeros(3), "conv.weight": torch.arange(6.0),
                 "steps": torch.tensor(5)}
        out = side_by_side._perturb_constant_tensors(state)
        self.assertFalse(torch.equal(out["norm.weight"], state["norm.weight"]))
        self.assertFalse(torch.equal(out["zero.bias"], state["zero.bias"]))
        self.assertTrue(torch.equal(out["conv.weight"], state["conv.weight"]))
        self.assertTrue(torch.equal(out["steps"], state["steps"]))


class TestOursInASubprocess(unittest.TestCase):
    def test_forward_time_and_flops(self):
        jobs = [{"kind": kind, "args": {"config": TINY_ECSD, "impl": "ours"}} for kind in ("time", "flops")]
        with ThreadPoolExecutor(2) as pool:  # two fresh processes at once, one thread each
            timed, counted = pool.map(lambda job: side_by_side.run_job(job, threads=1), jobs)
        self.assertGreater(timed["seconds"], 0)
        self.assertGreater(timed["peak_rss_gb"], 0.05)
        # the same network and input shapes, counted here
        net = ECSDUNet(channels=[8, 16, 32, 64], attention_heads=4, attention_head_channels=32, filter_size=32).eval()
        x = torch.zeros(1, 1, 32, 32)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x, torch.tensor([3]), x)
        self.assertGreater(counter.get_total_flops(), 0)
        self.assertEqual(counted["flops"], counter.get_total_flops())

    def test_operator_profile_job(self):
        ops = side_by_side.run_job({"kind": "ops", "args": {"config": TINY_ECSD, "impl": "ours"}}, threads=1)
        self.assertEqual(len(ops["ops"]), 12)
        self.assertEqual([o["self_s"] for o in ops["ops"]], sorted((o["self_s"] for o in ops["ops"]), reverse=True))
        self.assertGreater(ops["conv_self_s"], 0)
        self.assertAlmostEqual(ops["conv_share"], ops["conv_self_s"] / ops["aten_self_s"])
        # a forward under no_grad: no backward kernel among the operators
        self.assertFalse(any("backward" in o["op"] for o in ops["ops"]))

    def test_failing_job_reports_its_error(self):
        with self.assertRaisesRegex(RuntimeError, r"(?s)sampling job \{\} failed \(exit code 1\):.*KeyError: 'sampling'"):
            side_by_side.run_job({"kind": "sampling", "args": {}}, threads=1)


def _fake_run_job(diff: float = 0.0):
    """``run_job`` without subprocesses: the public network's timing is killed (as out of memory), ours takes 2 s."""

    def run(job: dict, threads: int) -> dict:
        if job["kind"] == "check":
            return {"max_abs_diff": diff, "max_abs_output": 1.0}
        if job["kind"] == "time" and job["args"]["impl"] == "public":
            raise RuntimeError("time job {} failed (exit code -9):\nKilled")
        if job["kind"] == "ops":
            return {"conv_self_s": 1.5, "aten_self_s": 2.0, "conv_share": 0.75, "ops": []}
        return {"seconds": 2.0, "peak_rss_gb": 1.0} if job["kind"] == "time" else {"flops": 4e9}

    return run


class TestMeasure(unittest.TestCase):
    def setUp(self):
        with _any_folder_is_a_checkout():
            self.cases = side_by_side.configs(side_by_side.parse_args(["--parts", "ecsd_forward", "--cold-segdiffusion", "."]))

    def test_a_failed_variant_is_reported_and_the_others_measured(self):
        with mock.patch.object(side_by_side, "run_job", side_effect=_fake_run_job()) as run:
            checks, rows = side_by_side.measure(self.cases, repeats=2, threads=1, tolerance=1e-3)
        self.assertEqual(checks[0]["max_abs_diff"], 0.0)
        self.assertEqual(rows[0]["error"], "failed (exit code -9) Killed")
        self.assertEqual((rows[1]["seconds"], rows[1]["all_seconds"], rows[1]["gflops_per_s"]), (2.0, [2.0, 2.0], 2.0))
        self.assertIsNone(rows[1]["ratio_public_over_ours"])
        # one check, public timed once (then skipped), ours twice, one FLOP count for ours
        self.assertEqual([c.args[0]["kind"] for c in run.call_args_list], ["check", "time", "time", "time", "flops"])

    def test_op_profile_runs_one_profile_per_measured_variant(self):
        with mock.patch.object(side_by_side, "run_job", side_effect=_fake_run_job()) as run:
            _, rows = side_by_side.measure(self.cases, repeats=1, threads=1, tolerance=1e-3, op_profile=True)
        self.assertEqual([c.args[0]["kind"] for c in run.call_args_list], ["check", "time", "time", "flops", "ops"])
        self.assertNotIn("op_profile", rows[0])  # the failed public variant is not profiled
        self.assertEqual(rows[1]["op_profile"]["conv_self_s"], 1.5)

    def test_different_outputs_stop_before_timing(self):
        fake = mock.patch.object(side_by_side, "run_job", side_effect=_fake_run_job(diff=0.5))
        with fake as run, self.assertRaisesRegex(RuntimeError, "differ by 0.5 .*tolerance 0.001"):
            side_by_side.measure(self.cases, repeats=1, threads=1, tolerance=1e-3)
        self.assertEqual(run.call_count, 1)


ROWS = [
    {"part": "ecsd_forward", "case": "512 x 512 batch 1", "impl": "public", "seconds": 4.0,
     "ratio_public_over_ours": None, "peak_rss_gb": 3.5, "flops": 200e9, "gflops_per_s": 50.0},
    {"part": "ecsd_forward", "case": "512 x 512 batch 1", "impl": "ours", "seconds": 2.0,
     "ratio_public_over_ours": 2.0, "peak_rss_gb": 1.25, "flops": 200e9, "gflops_per_s": 100.0},
]
MACHINE = {"conv": "conv2d", "conv3x3_gflops": 200.0, "conv3x3_channels_last_gflops": 250.0, "matmul": "mm",
           "matmul_gflops": 150.0}
CHECK = {"model": "ecsd", "config": {"size": 512}, "max_abs_diff": 2.5e-5, "max_abs_output": 1.5}


class TestFormatTable(unittest.TestCase):
    def test_given_numbers(self):
        result = {"threads": 2, "repeats": 3, "torch": "2.x", "rows": ROWS, "machine": MACHINE, "checks": [CHECK]}
        lines = side_by_side.format_table(result).splitlines()
        self.assertEqual(lines[0], "Side by side on 2 threads, median of 3 (torch 2.x)")
        self.assertEqual(lines[4], "| ecsd_forward | 512 x 512 batch 1 | public | 4.000 |  | 3.50 | 200.0 | 50.0 | 25 % |")
        self.assertEqual(lines[5], "| ecsd_forward | 512 x 512 batch 1 | ours | 2.000 | 2.00 | 1.25 | 200.0 | 100.0 | 50 % |")
        self.assertIn("conv2d: 200.0 GFLOP/s (250.0 channels-last); mm: 150.0 GFLOP/s.", lines[7])
        self.assertIn("ecsd 512: max |diff| 2.50e-05", lines[8])

    def test_operator_profile_columns(self):
        public = {**ROWS[0], "op_profile": {"conv_self_s": 3.0, "conv_share": 0.75, "aten_self_s": 4.4}}
        ours = {**ROWS[1], "op_profile": {"conv_self_s": 0.8, "conv_share": 0.4, "aten_self_s": 2.0}}
        result = {"threads": 2, "repeats": 3, "torch": "2.x", "rows": [public, ours], "machine": None, "checks": []}
        lines = side_by_side.format_table(result).splitlines()
        self.assertTrue(lines[2].endswith("| conv s (share) | public / our conv |"))
        self.assertTrue(lines[4].endswith("| 3.00 (75 %) |  |"))
        # the public network's profiled 4.4 s (not its timed 4.0 s) over our convolutions' 0.8 s
        self.assertTrue(lines[5].endswith("| 0.80 (40 %) | 5.50 |"))

    def test_failed_variant(self):
        failed = {"part": "ecsd_train", "case": "512 x 512 batch 2", "impl": "public", "error": "failed (exit code -9)"}
        result = {"threads": 1, "repeats": 1, "torch": "2.x", "rows": [failed], "machine": None, "checks": []}
        self.assertTrue(side_by_side.format_table(result).endswith(
            "| ecsd_train | 512 x 512 batch 2 | public | failed (exit code -9) |  |  |  |  |  |"))

    def test_without_machine_rates(self):
        result = {"threads": 1, "repeats": 1, "torch": "2.x", "rows": ROWS[1:], "machine": None, "checks": []}
        self.assertTrue(side_by_side.format_table(result).endswith("| 200.0 | 100.0 |  |"))


if __name__ == "__main__":
    unittest.main()
