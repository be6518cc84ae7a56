"""scripts/profile_ecsd_network.py: --conv-rates times every convolution of a forward, functional ones included;
--op-profile splits a forward or a training step into operators, the convolutions counted call for call."""

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
        # the share divides by a forward timed apart from the interception (two timings: no order between them)
        self.assertAlmostEqual(result["conv_share"], result["conv_s"] / result["forward_s"])
        for r in result["shapes"]:
            self.assertAlmostEqual(r["network_gflops"], r["gflop"] / r["network_s"])
        # every shape also timed alone with its backward (inside the forward's no_grad) in both memory formats
        for r in result["shapes"]:
            self.assertEqual({r["memory_format"], r["other_format"]}, {"channels_last", "contiguous"})
        self.assertEqual(
            result["best_format_backward_s"], profile._format_sums(result["shapes"])["best_format_backward_s"]
        )

    def test_format_sums(self):
        shapes = [
            {"alone_s": 1.0, "other_s": 0.5, "alone_backward_s": 2.0, "other_backward_s": 3.0},
            {"alone_s": 0.2, "other_s": 0.4, "alone_backward_s": 0.5, "other_backward_s": 0.25},
        ]
        sums = profile._format_sums(shapes)
        expected = {
            "alone_forward_s": 1.2, "other_format_forward_s": 0.9, "best_format_forward_s": 0.7,
            "alone_backward_s": 2.5, "other_format_backward_s": 3.25, "best_format_backward_s": 2.25,
        }  # fmt: skip
        self.assertEqual(sums.keys(), expected.keys())
        for key, value in expected.items():
            self.assertAlmostEqual(sums[key], value, msg=key)


def count_convolutions(fn) -> int:
    """Number of ``aten.convolution`` calls of ``fn()``, caught below autograd."""

    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution.default:
                calls.append(1)
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return len(calls)


class TestOpProfile(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.net = ECSDUNet(channels=(8, 16, 32, 64), filter_size=32)
        g = torch.Generator().manual_seed(0)
        self.inputs = (
            torch.rand(2, 1, 32, 32, generator=g),
            torch.tensor([3, 40]),
            torch.rand(2, 1, 32, 32, generator=g),
        )
        self.target = torch.rand(2, 1, 32, 32, generator=g)

    def step(self, mode: str):
        return profile._profile_step(self.net, self.inputs, self.target, {"op_profile": mode})

    def profile(self, mode: str) -> dict:
        return profile.operator_profile(self.step(mode), top=1000)

    def calls(self, result: dict) -> dict:
        return {op["op"]: op["calls"] for op in result["ops"]}

    def test_forward_counts_every_convolution_and_no_backward(self):
        step = self.step("forward")
        expected = count_convolutions(step)
        result = self.profile("forward")
        calls = self.calls(result)
        self.assertEqual(calls["aten::convolution"], expected)
        self.assertNotIn("aten::convolution_backward", calls)
        conv = sum(op["self_s"] for op in result["ops"] if "conv" in op["op"])
        self.assertAlmostEqual(result["conv_self_s"], conv)
        self.assertAlmostEqual(result["aten_self_s"], sum(op["self_s"] for op in result["ops"]))
        self.assertAlmostEqual(result["conv_share"], conv / result["aten_self_s"])

    def test_train_step_has_one_convolution_backward_per_convolution_and_updates_the_weights(self):
        before = [p.detach().clone() for p in self.net.parameters()]
        result = self.profile("train")
        calls = self.calls(result)
        self.assertEqual(calls["aten::convolution_backward"], calls["aten::convolution"])
        self.assertGreater(calls["aten::convolution"], 100)
        # warm-up, timed and profiled steps: three Adam steps, so every parameter has moved
        moved = [not torch.equal(a, p.detach()) for a, p in zip(before, self.net.parameters())]
        self.assertTrue(all(moved))


if __name__ == "__main__":
    unittest.main()
