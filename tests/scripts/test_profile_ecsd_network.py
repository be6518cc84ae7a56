"""scripts/profile_ecsd_network.py --conv-rates: every convolution of a forward is timed, functional ones included."""

from __future__ import annotations

import unittest

import torch
from bundle_testing import load_script
from torch.utils.flop_counter import FlopCounterMode

from emdiff_components.networks import ECSDUNet

profile = load_script("profile_ecsd_network")


def counted_conv_flops(fn) -> int:
    """Convolution FLOPs of ``fn()`` as torch's own flop counter sees them."""

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_flop_counts()["Global"][torch.ops.aten.convolution]


class TestConvRates(unittest.TestCase):
    def test_every_convolution_of_a_forward_is_timed(self):
        torch.manual_seed(0)
        net = ECSDUNet(channels=(8, 16, 32, 64), filter_size=32).eval()
        inputs = (torch.rand(1, 1, 32, 32) * 2 - 1, torch.tensor([7]), torch.rand(1, 1, 32, 32) * 2 - 1)
        with torch.no_grad():
            expected = counted_conv_flops(lambda: net(*inputs))
        result = profile._conv_rates(net, inputs, repeats=1)
        self.assertAlmostEqual(result["conv_gflop"] * 1e9, expected, delta=1)
        module_calls = []
        handles = [
            m.register_forward_hook(lambda *_: module_calls.append(1))
            for m in net.modules()
            if isinstance(m, torch.nn.Conv2d)
        ]
        with torch.no_grad():
            net(*inputs)
        for h in handles:
            h.remove()
        # the modules' calls plus the functional ones (q/k/v projections, polyphase upsampling)
        self.assertGreater(sum(r["calls"] for r in result["shapes"]), len(module_calls))
        self.assertAlmostEqual(result["conv_s"], sum(r["network_s"] for r in result["shapes"]))
        self.assertLess(result["conv_s"], result["forward_s"])
        for r in result["shapes"]:
            self.assertAlmostEqual(r["network_gflops"], r["gflop"] / r["network_s"])


if __name__ == "__main__":
    unittest.main()
