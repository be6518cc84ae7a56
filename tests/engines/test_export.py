"""engines.export on every bundle network at tiny widths; MONAI's own ckpt_export / verify_net_in_out where they serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import torch
from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out
from monai.data import load_net_with_metadata
from parameterized import parameterized

from emdiff_components.engines import DENOISER_INPUTS, export_network, verify_denoiser_in_out

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"

ECSD = {"channels": [8, 16, 32, 64], "attention_heads": 1, "attention_head_channels": 8, "filter_size": [64, 64],
        "use_checkpointing": False}
BIEDSNET = {"channels": [8, 16, 16, 32, 32], "num_res_blocks": 1}
NEURODIFF = {"channels": [8, 16, 16, 32, 32, 64, 64], "time_channels": 16, "norm_num_groups": 8,
             "msc_channels": [8, 8, 16, 16], "patch_size": [4, 64, 64], "use_checkpointing": False}
CELLCASCADE = {"mask_channels": [8, 16, 16], "texture_channels": [8, 16, 16], "norm_num_groups": 8,
               "num_head_channels": 8, "conditioning_channels": [8]}
TWO_INPUTS = ["x_t", "timesteps"]
SUPERHUMAN_FILTERS = [4, 6, 8, 10, 12]
# the metadata describes NeuroDiff's synthesis network; the segmentation network maps 1 EM channel to 3 affinities
SUPERHUMAN_IO = {"_meta_#network_data_format#inputs#image#num_channels": 1,
                 "_meta_#network_data_format#outputs#pred#num_channels": 3}

# name, bundle, config, network id, tiny overrides, metadata inputs passed in order, batch, spatial size
DENOISERS = [
    ("ecsd_unet", "ecsd", "inference.json", "network_def", ECSD, DENOISER_INPUTS, 2, [64, 64]),
    ("biedsnet", "biedsnet", "inference.json", "network_def", BIEDSNET, DENOISER_INPUTS, 2, [64, 64]),
    ("neurodiff_unet", "neurodiff", "inference.json", "network_def", NEURODIFF, DENOISER_INPUTS, 1, [8, 64, 64]),
    ("cellcascade_masks", "cellcascade", "inference.json", "mask_network_def", CELLCASCADE, TWO_INPUTS, 2, [32, 32]),
    ("cellcascade_texture", "cellcascade", "inference.json", "network_def", CELLCASCADE, DENOISER_INPUTS, 2,
     [32, 32]),
]


def build(bundle: str, config: str, net_id: str, overrides: dict, meta: bool = False) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / config))
    if meta:
        parser.read_meta(str(BUNDLES / bundle / "configs" / "metadata.json"))
    for key, value in overrides.items():
        parser[key] = value
    return parser


def save_random_weights(network: torch.nn.Module, path: Path) -> None:
    """Weights with every tensor moved off its initial value (zero-initialised output layers would make every
    network output 0, and any two programs agree on 0)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in network.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    torch.save(network.state_dict(), path)


def random_inputs(names, batch: int, spatial: list[int], channels: dict, timesteps: list[int], seed: int):
    generator = torch.Generator().manual_seed(seed)
    out = []
    for name in names:
        if name == "timesteps":
            out.append(torch.tensor(timesteps[:batch]))
        else:
            out.append(2 * torch.rand((batch, channels[name], *spatial), generator=generator) - 1)
    return tuple(out)


class TestExportNetwork(unittest.TestCase):
    @parameterized.expand(DENOISERS)
    def test_exported_program_equals_eager(self, _, bundle, config, net_id, overrides, names, batch, spatial):
        configs = BUNDLES / bundle / "configs"
        with tempfile.TemporaryDirectory() as tmp:
            ckpt, program_file = Path(tmp) / "model.pt", Path(tmp) / "model.ts"
            save_random_weights(build(bundle, config, net_id, overrides).get_parsed_content(net_id), ckpt)
            export_network(net_id, filepath=str(program_file), ckpt_file=str(ckpt), config_file=str(configs / config),
                           meta_file=str(configs / "metadata.json"), input_names=list(names), batch_size=batch,
                           spatial_shape=spatial, bundle_root=tmp, **overrides)
            program, meta, extra = load_net_with_metadata(str(program_file), more_extra_files=(config,))
            eager = build(bundle, config, net_id, overrides).get_parsed_content(net_id)
            eager.load_state_dict(torch.load(ckpt, weights_only=True))
            eager.eval()
        # the file carries the metadata and the config, as ckpt_export writes them
        self.assertEqual(meta["version"], json.loads((configs / "metadata.json").read_text())["version"])
        self.assertEqual(json.loads(extra[config]), json.loads((configs / config).read_text()))
        declared = meta["network_data_format"]["inputs"]
        channels = {name: declared[name]["num_channels"] for name in names if name != "timesteps"}
        # new inputs and time steps, not those traced: same numbers as the eager network
        outputs = []
        for timesteps, seed in (([3, 17], 11), ([40, 0], 11)):
            args = random_inputs(names, batch, spatial, channels, timesteps, seed)
            with torch.no_grad():
                expected, got = eager(*args), program(*args)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
            self.assertGreater(expected.abs().max().item(), 1e-3)  # not a trivial all-zero agreement
            outputs.append(got)
        # the time step is an input of the program, not a constant of the trace
        self.assertGreater((outputs[0] - outputs[1]).abs().max().item(), 1e-4)
        # other shapes than the traced ones are refused (a trace may hold for its batch and size only)
        args = random_inputs(names, batch + 1, spatial, channels, [1, 2, 3], 0)
        with self.assertRaisesRegex(Exception, "exported for inputs of shapes"):
            program(*args)

    def test_weights_of_another_configuration(self):
        """Weights that do not fit the network: the error names the file, before anything is written."""
        configs = BUNDLES / "biedsnet" / "configs"
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / "small.pt"
            torch.save(build("biedsnet", "inference.json", "network_def", BIEDSNET)
                       .get_parsed_content("network_def").state_dict(), ckpt)
            with self.assertRaisesRegex(ValueError, r"small\.pt does not fit BIEDSNet"):
                export_network(filepath=str(Path(tmp) / "model.ts"), ckpt_file=str(ckpt),
                               config_file=str(configs / "inference.json"), meta_file=str(configs / "metadata.json"),
                               bundle_root=tmp, num_res_blocks=2, channels=BIEDSNET["channels"])
            self.assertFalse((Path(tmp) / "model.ts").exists())

    def test_command_line(self):
        """The README's form: ``python -m emdiff_components export_network`` writes a program MONAI loads."""
        bundle = BUNDLES / "biedsnet"
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "models").mkdir()
            save_random_weights(build("biedsnet", "inference.json", "network_def", BIEDSNET)
                                .get_parsed_content("network_def"), Path(tmp) / "models" / "model.pt")
            result = subprocess.run(
                [sys.executable, "-m", "emdiff_components", "export_network",
                 "--config_file", str(bundle / "configs" / "inference.json"),
                 "--meta_file", str(bundle / "configs" / "metadata.json"), "--bundle_root", tmp,
                 "--batch_size", "1", "--spatial_shape", "[64, 64]",
                 "--channels", json.dumps(BIEDSNET["channels"]), "--num_res_blocks", "1"],
                check=False, capture_output=True, text=True, cwd=tmp,
            )
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            difference = re.search(r"max \|exported - eager\| = (\S+)", result.stderr)
            self.assertIsNotNone(difference, result.stderr[-3000:])
            self.assertLessEqual(float(difference.group(1)), 1e-5)
            program, meta, _ = load_net_with_metadata(str(Path(tmp) / "models" / "model.ts"))
        self.assertEqual(meta["name"], json.loads((bundle / "configs" / "metadata.json").read_text())["name"])
        x, t, c = torch.zeros(1, 1, 64, 64), torch.tensor([5]), torch.zeros(1, 1, 64, 64)
        self.assertEqual(tuple(program(x, t, c).shape), (1, 1, 64, 64))


class TestVerifyDenoiserInOut(unittest.TestCase):
    @parameterized.expand(DENOISERS)
    def test_metadata_fits_network(self, _, bundle, config, net_id, overrides, names, batch, spatial):
        configs = BUNDLES / bundle / "configs"
        verify_denoiser_in_out(net_id, meta_file=str(configs / "metadata.json"), config_file=str(configs / config),
                               input_names=list(names), batch_size=batch, **overrides)

    def test_wrong_declarations(self):
        configs = BUNDLES / "ecsd" / "configs"
        common = {"meta_file": str(configs / "metadata.json"), "config_file": str(configs / "inference.json"),
                  "n": 8, **ECSD}
        with self.assertRaisesRegex(ValueError, r"metadata\.json: outputs#pred declares 3 channels, ECSDUNet gives 1"):
            verify_denoiser_in_out(**common, **{"_meta_#network_data_format#outputs#pred#num_channels": 3})
        with self.assertRaisesRegex(ValueError, r"metadata\.json: ECSDUNet \(network_def\) rejects the declared"):
            verify_denoiser_in_out(**common, **{"_meta_#network_data_format#inputs#image#num_channels": 2})
        with self.assertRaisesRegex(ValueError, r"network_data_format#inputs has no 'noise'"):
            verify_denoiser_in_out(**common, input_names=["noise", "timesteps", "image"])


class TestSuperhumanWithMonaiTools(unittest.TestCase):
    """NeuroDiff's segmentation network takes one input: MONAI's ckpt_export (tracing) and verify_net_in_out serve it,
    with the metadata's image / pred channels overridden (the metadata describes the synthesis network)."""

    def test_ckpt_export_and_verify(self):
        configs = BUNDLES / "neurodiff" / "configs"
        files = {"meta_file": str(configs / "metadata.json"), "config_file": str(configs / "segment.json")}
        verify_net_in_out("network_def", device="cpu", filters=SUPERHUMAN_FILTERS, **files, **SUPERHUMAN_IO)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt, program_file = Path(tmp) / "model.pt", Path(tmp) / "model.ts"
            save_random_weights(build("neurodiff", "segment.json", "network_def", {"filters": SUPERHUMAN_FILTERS})
                                .get_parsed_content("network_def"), ckpt)
            ckpt_export("network_def", filepath=str(program_file), ckpt_file=str(ckpt), use_trace=True,
                        input_shape=[1, 1, 16, 64, 64], filters=SUPERHUMAN_FILTERS, **files)
            program, _, _ = load_net_with_metadata(str(program_file))
            eager = build("neurodiff", "segment.json", "network_def", {"filters": SUPERHUMAN_FILTERS})
            eager = eager.get_parsed_content("network_def")
            eager.load_state_dict(torch.load(ckpt, weights_only=True))
        eager.eval()
        x = torch.rand((2, 1, 8, 32, 48), generator=torch.Generator().manual_seed(3))  # another batch and size
        with torch.no_grad():
            expected = eager(x)
            torch.testing.assert_close(program(x), expected, atol=1e-5, rtol=0)
        self.assertGreater(expected.std().item(), 1e-4)


if __name__ == "__main__":
    unittest.main()
