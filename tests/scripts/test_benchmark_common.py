from __future__ import annotations

import resource
import unittest

from bundle_testing import load_script

common = load_script("benchmark_common")


class TestBenchmarkCommon(unittest.TestCase):
    def test_child_result_is_its_last_stdout_line(self):
        out = common.run_json_child(["-c", "import json; print('progress'); print(json.dumps({'seconds': 1.5}))"])
        self.assertEqual(out, {"seconds": 1.5})

    def test_child_failure_names_the_exit_code_and_stderr(self):
        with self.assertRaisesRegex(RuntimeError, r"speed failed \(exit code 3\):\n.*boom"):
            common.run_json_child(["-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"], what="speed")

    def test_peak_is_maxrss_in_gib(self):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        peak = common.peak_rss_gb()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        self.assertTrue(before <= peak <= after)


if __name__ == "__main__":
    unittest.main()
