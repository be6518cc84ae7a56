"""scripts/convert_reference_weights.py on the Cold SegDiffusion reference fixture."""

from __future__ import annotations

import importlib.util
import tempfile
import unittest
from pathlib import Path

import pytest
import torch
from parameterized import parameterized

from emdiff_components.engines import load_network_weights
from emdiff_components.networks import ECSDUNet

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "convert_reference_weights.py"
_spec = importlib.util.spec_from_file_location("convert_reference_weights", _SCRIPT)
convert_reference_weights = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert_reference_weights)

_TESTS = Path(__file__).resolve().parents[1]
_helpers = importlib.util.spec_from_file_location("ecsd_reference", _TESTS / "networks" / "test_ecsd_reference.py")
ecsd_reference = importlib.util.module_from_spec(_helpers)
_helpers.loader.exec_module(ecsd_reference)

# the Unet arguments of the fixture: Unet(dim=16, image_size=64, mask_channels=1, input_img_channels=1)
UNET_ARGS = {"dim": 16, "image_size": 64, "mask_channels": 1, "input_img_channels": 1}


def _wrapped(state: dict, form: str) -> dict:
    """The fixture's Unet state_dict as the public code or its tools might save it."""
    if form == "bare":
        return state
    if form == "under_model":
        return {"model": state, "epoch": 3}
    if form == "medsegdiff":  # MedSegDiff(model=Unet).state_dict(): model.* plus the schedule buffers
        buffers = {"betas": torch.zeros(50), "alphas_cum_prod": torch.ones(50)}
        return {**buffers, **{f"model.{k}": v for k, v in state.items()}}
    if form == "ddp_ema":  # ema_pytorch.EMA of a DDP-wrapped network
        return {
            "initted": torch.tensor(True),
            "step": torch.tensor(10),
            **{f"online_model.module.{k}": v + 1 for k, v in state.items()},
            **{f"ema_model.module.{k}": v for k, v in state.items()},
        }
    raise ValueError(form)


class TestConvertReferenceWeights(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _fixture(self, shared_data):
        self.fixture = ecsd_reference.load_reference_fixture(shared_data, ecsd_reference.FIXTURE)

    def _save(self, tmp: str, obj: object) -> Path:
        path = Path(tmp) / "reference.pth"
        torch.save(obj, path)
        return path

    @parameterized.expand([("bare",), ("under_model",), ("medsegdiff",), ("ddp_ema",)])
    def test_converted_file_reproduces_reference_output(self, form):
        with tempfile.TemporaryDirectory() as tmp:
            source = self._save(tmp, _wrapped(self.fixture["state_dict"], form))
            out = Path(tmp) / "models" / "model.pt"
            argv = [str(source), "--out", str(out), "--dim", "16", "--image-size", "64", "--input-img-channels", "1"]
            self.assertEqual(convert_reference_weights.main(argv), 0)
            # the bundle's loader takes the file as it is
            args = convert_reference_weights.network_args(**UNET_ARGS)
            net = load_network_weights(ECSDUNet(**args), out).eval()
        self.assertEqual(args["channels"], [16, 32, 64, 128])
        inputs = self.fixture["inputs"]
        with torch.no_grad():
            output = net(inputs["x"], inputs["time"], inputs["cond"])
        torch.testing.assert_close(output, self.fixture["output"], atol=1e-4, rtol=0)

    def test_unknown_key_names_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            source = self._save(tmp, {**self.fixture["state_dict"], "extra_head.weight": torch.zeros(1)})
            with self.assertRaisesRegex(ValueError, r"reference\.pth: 1 key\(s\) are not .*extra_head\.weight"):
                convert_reference_weights.convert(source, Path(tmp) / "model.pt", **UNET_ARGS)
            self.assertFalse((Path(tmp) / "model.pt").exists())

    def test_wrong_arguments_name_the_file_and_the_shapes(self):
        with tempfile.TemporaryDirectory() as tmp:
            source = self._save(tmp, self.fixture["state_dict"])
            with self.assertRaisesRegex(ValueError, r"reference\.pth: does not fit Unet\(dim=32.*other shape"):
                convert_reference_weights.convert(source, Path(tmp) / "model.pt", **{**UNET_ARGS, "dim": 32})
            argv = [str(source), "--out", str(Path(tmp) / "m.pt"), "--dim", "16", "--image-size", "32"]
            self.assertEqual(convert_reference_weights.main(argv), 1)

    def test_unreadable_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "broken.pth"
            source.write_text("not a checkpoint")
            with self.assertRaisesRegex(ValueError, r"broken\.pth: cannot be read"):
                convert_reference_weights.convert(source, Path(tmp) / "model.pt", **UNET_ARGS)


if __name__ == "__main__":
    unittest.main()
