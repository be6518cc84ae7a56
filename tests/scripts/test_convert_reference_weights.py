"""scripts/convert_reference_weights.py on the Cold SegDiffusion and NeuroDiff reference fixtures."""

from __future__ import annotations

import importlib.util
import tempfile
import unittest
from pathlib import Path

import pytest
import torch
from bundle_testing import load_script
from monai.bundle import ConfigParser
from parameterized import parameterized

from emdiff_components.engines import load_network_weights
from emdiff_components.networks import ECSDUNet, NeuroDiffUNet

convert_reference_weights = load_script("convert_reference_weights")

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


NEURODIFF_FIXTURE = "neurodiff_unet_small.pt"
# the fixture's NeuroDiff(image_size=32, in_channels=3, model_channels=64, out_channels=1, num_res_blocks=1,
# attention_resolutions=(4,), channel_mult=(0.5, 0.5, 0.5), ani_ratio=2, res_z=29, res_xy=6, ...)
NEURODIFF_ARGS = {"model_channels": 64, "channel_mult": [0.5, 0.5, 0.5], "attention_resolutions": [4], "ani_ratio": 2}
NEURODIFF_ARGV = ["--network", "neurodiff", "--channel-mult", "0.5", "0.5", "0.5", "--attention-resolutions", "4",
                  "--ani-ratio", "2"]
NEURODIFF_BUFFERS = {"betas": torch.zeros(250), "alphas_cumprod": torch.ones(250), "posterior_mean_coef3": torch.ones(250)}


def _neurodiff_wrapped(state: dict, form: str) -> dict:
    """The fixture's NeuroDiff state_dict as the public code or its tools might save it."""
    if form == "bare":
        return state
    if form == "under_state_dict":
        return {"state_dict": state, "epoch": 3}
    if form == "public_trainer":  # Trainer.save: GaussianDiffusion state_dicts, the online one and the EMA
        diffusion = {f"denoise_fn.{k}": v for k, v in state.items()}
        online = {k: v + 1 for k, v in diffusion.items()}
        return {"step": 1000, "model": {**NEURODIFF_BUFFERS, **online}, "ema": {**NEURODIFF_BUFFERS, **diffusion}}
    if form == "ddp":
        return {f"module.{k}": v for k, v in state.items()}
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


class TestConvertNeuroDiffWeights(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _fixture(self, shared_data):
        self.fixture = ecsd_reference.load_reference_fixture(shared_data, NEURODIFF_FIXTURE)

    def _save(self, tmp: str, obj: object) -> Path:
        path = Path(tmp) / "neurodiff.pt"
        torch.save(obj, path)
        return path

    def test_fixture_arguments(self):
        args = convert_reference_weights.neurodiff_network_args(**NEURODIFF_ARGS)
        self.assertEqual(
            args,
            {"in_channels": 1, "cond_channels": 2, "out_channels": 1, "channels": [32, 32, 32], "time_channels": 64,
             "num_res_blocks": 1, "rgm_factors": [4], "anisotropy_ratio": 2, "voxel_size": [29.0, 6.0, 6.0]},
        )

    @parameterized.expand([("bare",), ("under_state_dict",), ("public_trainer",), ("ddp",)])
    def test_converted_file_reproduces_reference_output(self, form):
        with tempfile.TemporaryDirectory() as tmp:
            source = self._save(tmp, _neurodiff_wrapped(self.fixture["state_dict"], form))
            out = Path(tmp) / "models" / "model.pt"
            self.assertEqual(convert_reference_weights.main([str(source), "--out", str(out), *NEURODIFF_ARGV]), 0)
            # the bundle's loader (strict) takes the file as it is, RGM voxel-size buffers included
            args = convert_reference_weights.neurodiff_network_args(**NEURODIFF_ARGS)
            net = load_network_weights(NeuroDiffUNet(**args), out).eval()
        inputs = self.fixture["inputs"]
        with torch.no_grad():
            output = net(inputs["x_t"], inputs["timesteps"], inputs["condition"])
        torch.testing.assert_close(output, self.fixture["output"], atol=1e-4, rtol=0)

    def test_public_defaults_are_the_bundle_network(self):
        """train.py's NeuroDiff arguments give the neurodiff bundle's network_def, so its model.pt loads there."""
        parser = ConfigParser()
        parser.read_config(str(convert_reference_weights.BUNDLES / "neurodiff" / "configs" / "inference.json"))
        bundle = parser.get_parsed_content("network_def").state_dict()
        ours = NeuroDiffUNet(**convert_reference_weights.neurodiff_network_args()).state_dict()
        self.assertEqual({k: v.shape for k, v in ours.items()}, {k: v.shape for k, v in bundle.items()})
        resolution = next(k for k in ours if k.endswith("rpge.resolution"))
        torch.testing.assert_close(ours[resolution], bundle[resolution])

    def test_missing_and_unexpected_keys_name_the_file(self):
        state = dict(self.fixture["state_dict"])
        dropped = "out.2.weight"
        del state[dropped]
        with tempfile.TemporaryDirectory() as tmp:
            source = self._save(tmp, state)
            with self.assertRaisesRegex(ValueError, rf"neurodiff\.pt: does not fit NeuroDiff\(.*missing \['{dropped}'\]"):
                convert_reference_weights.convert(source, Path(tmp) / "model.pt", "neurodiff", **NEURODIFF_ARGS)
            source = self._save(tmp, {**self.fixture["state_dict"], "label_emb.weight": torch.zeros(1)})
            with self.assertRaisesRegex(ValueError, r"neurodiff\.pt: 1 key\(s\) are not NeuroDiff.*label_emb\.weight"):
                convert_reference_weights.convert(source, Path(tmp) / "model.pt", "neurodiff", **NEURODIFF_ARGS)
            # the public defaults are a wider network: shapes that do not fit, and the command line says so
            argv = [str(source), "--out", str(Path(tmp) / "m.pt"), "--network", "neurodiff"]
            self._save(tmp, self.fixture["state_dict"])
            self.assertEqual(convert_reference_weights.main(argv), 1)
            self.assertFalse((Path(tmp) / "model.pt").exists() or (Path(tmp) / "m.pt").exists())


if __name__ == "__main__":
    unittest.main()
