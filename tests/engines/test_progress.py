"""TrainingProgress: the line's counts, loss, speed and time left on a real ignite engine."""

from __future__ import annotations

import logging
import re
import time
import unittest

from ignite.engine import Engine

from emdiff_components.engines import TrainingProgress
from emdiff_components.engines.progress import _clock


class TestTrainingProgress(unittest.TestCase):
    def test_lines_every_interval_and_at_the_end(self):
        def step(engine, batch):
            time.sleep(0.01)
            return [{"loss": 1.0 / engine.state.iteration}]

        engine = Engine(step)
        TrainingProgress(interval=4, name="progress_test").attach(engine)
        with self.assertLogs("progress_test", level=logging.INFO) as logs:
            engine.run(range(5), max_epochs=2)  # 10 iterations
        lines = [r.getMessage() for r in logs.records]
        self.assertEqual([re.match(r"iteration (\d+)/10", m).group(1) for m in lines], ["4", "8", "10"])
        self.assertIn("(40 %)", lines[0])
        self.assertIn("loss 0.25", lines[0])
        self.assertIn("loss 0.1,", lines[2])
        speed = float(re.search(r"([\d.]+) it/s", lines[0]).group(1))
        self.assertTrue(20 < speed < 101, lines[0])  # 10 ms per iteration, plus overhead
        left = re.search(r"left (\d+):(\d\d)$", lines[-1])
        self.assertEqual(left.groups(), ("0", "00"))

    def test_total_set_while_running(self):
        """A run that stops on a budget (the learning curves) states its own total; the line follows it, and the
        iteration it stops at gets a last line even between intervals."""
        progress = TrainingProgress(interval=5, name="progress_total")

        def step(engine, batch):
            if engine.state.iteration == 2:
                progress.total = 20
            if engine.state.iteration == 12:
                engine.terminate()
            return [{"loss": 0.5}]

        engine = Engine(step)
        progress.attach(engine)
        with self.assertLogs("progress_total", level=logging.INFO) as logs:
            engine.run(range(10), max_epochs=100000)  # the budget runs' sentinel
        lines = [r.getMessage().split(",")[0] for r in logs.records]
        self.assertEqual(lines, ["iteration 5/20 (25 %)", "iteration 10/20 (50 %)", "iteration 12/20 (60 %)"])

    def test_clock_and_errors(self):
        self.assertEqual(_clock(59.6), "1:00")
        self.assertEqual(_clock(3725), "1:02:05")
        with self.assertRaisesRegex(ValueError, "interval"):
            TrainingProgress(interval=0)


if __name__ == "__main__":
    unittest.main()
