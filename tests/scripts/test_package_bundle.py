"""scripts/package_bundle.py: a packaged bundle downloads with MONAI and runs like the repository copy; bad bundles fail."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

import numpy as np
import tifffile
import torch
import yaml
from bundle_testing import REPO, load_script, shared_data_or_skip
from monai.bundle import ConfigParser
from parameterized import parameterized

package_bundle = load_script("package_bundle")
PackagingError = package_bundle.PackagingError

BUNDLES = REPO / "bundles"
# the ECSD network at a tiny width: written into the packaged configs with --set, given as overrides to the repo copy
NETWORK_SETTINGS = {"channels": [8, 16, 32, 64], "attention_heads": 1, "attention_head_channels": 8,
                    "filter_size": [64, 64]}
# a small run, the same for both copies
RUN = {"patch_size": [64, 64], "use_checkpointing": False, "num_inference_steps": 2, "progress": False}
LOCAL_ONLY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with mock.patch.dict(os.environ, LOCAL_ONLY):
            yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def cli_args(values: dict) -> list[str]:
    """``{"channels": [8, 16]}`` -> ``["--channels", "[8, 16]"]``: values as Python literals, as fire reads them."""
    return [arg for key, value in values.items() for arg in (f"--{key}", repr(value))]


def monai_bundle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monai.bundle", *args], check=False, capture_output=True, text=True,
                          env={**os.environ, **LOCAL_ONLY})


def bundle_copy(root: Path, name: str = "ecsd") -> Path:
    """A copy of the repository's bundle ``name`` (configs, docs, LICENSE) under ``root/bundles``."""
    source, copy = BUNDLES / name, root / "bundles" / name
    copy.mkdir(parents=True)
    for part in ("configs", "docs"):
        shutil.copytree(source / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(source / "LICENSE", copy / "LICENSE")
    return root / "bundles"


def tiny_ecsd_weights(path: Path, settings: dict = NETWORK_SETTINGS) -> Path:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / "ecsd" / "configs" / "inference.json"))
    for key, value in settings.items():
        parser[key] = value
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


def version(name: str) -> str:
    return json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())["version"]


class TestPackageBundle(unittest.TestCase):
    def test_downloaded_copy_runs_like_the_repository(self):
        shared = shared_data_or_skip(self)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            bundles = bundle_copy(tmp)
            # what a working bundle folder also holds, none of which is packed
            for junk in ("outputs/inference/x.tif", "demo_data/imagesTs/a.tif", "configs/__pycache__/x.pyc",
                         "models/checkpoint.pt"):
                (bundles / "ecsd" / junk).parent.mkdir(parents=True, exist_ok=True)
                (bundles / "ecsd" / junk).write_bytes(b"x")
            weights = tiny_ecsd_weights(tmp / "trained.pt")
            zip_path = package_bundle.package_bundle("ecsd", tmp / "dist", weights=[str(weights)],
                                                     settings=NETWORK_SETTINGS, bundles_dir=bundles)
            self.assertEqual(zip_path, tmp / "dist" / f"ecsd_v{version('ecsd')}.zip")
            names = set(zipfile.ZipFile(zip_path).namelist())
            configs = {f"ecsd/configs/{p.name}" for p in (BUNDLES / "ecsd" / "configs").iterdir() if p.is_file()}
            docs = {f"ecsd/docs/{p.name}" for p in (BUNDLES / "ecsd" / "docs").iterdir()}
            self.assertEqual(names, configs | docs | {"ecsd/LICENSE", "ecsd/models/model.pt"})

            image = tifffile.imread(shared / "isbi2012_em" / "train-volume.tif")[0, 100:164, 200:264]
            tifffile.imwrite(tmp / "slice.tif", image)
            run = cli_args({**RUN, "input": str(tmp / "slice.tif"), "dataset_dir": str(tmp / "unused")})
            with serve(tmp / "dist") as url:
                result = monai_bundle("download", "--name", "ecsd", "--url", f"{url}/{zip_path.name}",
                                      "--bundle_dir", str(tmp / "downloaded"))
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            installed = tmp / "downloaded" / "ecsd"
            self.assertEqual((installed / "models" / "model.pt").read_bytes(), weights.read_bytes())
            # the downloaded copy runs with its packaged settings; the repository copy needs them as overrides
            result = monai_bundle("run", "--config_file", str(installed / "configs" / "inference.json"),
                                  "--meta_file", str(installed / "configs" / "metadata.json"),
                                  "--logging_file", str(installed / "configs" / "logging.conf"),
                                  "--bundle_root", str(installed), *run)
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            configs = BUNDLES / "ecsd" / "configs"
            result = monai_bundle("run", "--config_file", str(configs / "inference.json"),
                                  "--meta_file", str(configs / "metadata.json"),
                                  "--logging_file", str(configs / "logging.conf"),
                                  "--bundle_root", str(tmp / "repository_run"), "--ckpt_path", str(weights),
                                  *cli_args(NETWORK_SETTINGS), *run)
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            downloaded = tifffile.imread(installed / "outputs" / "inference" / "masks" / "slice.tif")
            repository = tifffile.imread(tmp / "repository_run" / "outputs" / "inference" / "masks" / "slice.tif")
        self.assertEqual(downloaded.shape, (64, 64))
        self.assertEqual(set(np.unique(repository)), {0, 1})  # both classes: the comparison is not of two blanks
        np.testing.assert_array_equal(downloaded, repository)

    def test_large_files(self):
        """Weights hosted elsewhere: listed in large_files.yml in MONAI's format; download_large_files fetches them."""
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "dist").mkdir()
            weights = tiny_ecsd_weights(tmp / "dist" / "hosted.pt")
            with serve(tmp / "dist") as url:
                zip_path = package_bundle.package_bundle(
                    "ecsd", tmp / "dist", large_files=[f"{url}/hosted.pt=models/model.pt"], settings=NETWORK_SETTINGS
                )
                names = zipfile.ZipFile(zip_path).namelist()
                result = monai_bundle("download", "--name", "ecsd", "--url", f"{url}/{zip_path.name}",
                                      "--bundle_dir", str(tmp / "downloaded"))
                self.assertEqual(result.returncode, 0, result.stderr[-3000:])
                installed = tmp / "downloaded" / "ecsd"
                listed = yaml.safe_load((installed / "large_files.yml").read_text())
                fetched = monai_bundle("download_large_files", "--bundle_path", str(installed))
            self.assertEqual(fetched.returncode, 0, fetched.stderr[-3000:])
            expected = {"path": "models/model.pt", "url": f"{url}/hosted.pt",
                        "hash_val": hashlib.sha256(weights.read_bytes()).hexdigest(), "hash_type": "sha256"}
            self.assertEqual(listed, {"large_files": [expected]})
            self.assertNotIn("ecsd/models/model.pt", names)
            self.assertEqual((installed / "models" / "model.pt").read_bytes(), weights.read_bytes())


class TestPackagingChecks(unittest.TestCase):
    @parameterized.expand([(name,) for name in ("ecsd", "biedsnet", "neurodiff", "cellcascade")])
    def test_bundle_metadata_and_configs(self, name):
        """Every bundle has a version that is its newest changelog entry, and configs that parse."""
        self.assertEqual(package_bundle.check_metadata(BUNDLES / name / "configs" / "metadata.json"), version(name))
        configs = sorted(p for p in (BUNDLES / name / "configs").iterdir() if p.suffix == ".json")
        package_bundle.check_configs_parse(configs, {})

    def test_weights_paths_map_to_networks(self):
        """``<prefix>ckpt_path`` -> ``<prefix>network_def``, overlays on top of their base, every loader listed."""
        configs = sorted((BUNDLES / "neurodiff" / "configs").glob("*.json"))
        found = package_bundle.networks_by_weights(configs, BUNDLES / "neurodiff")
        loaders = {dest: sorted((" + ".join(f.name for f in files), net) for files, net in entries)
                   for dest, entries in found.items()}
        self.assertEqual(loaders["models/model.pt"], [("inference.json", "network_def")])
        self.assertEqual(loaders["models/msc_only/model.pt"], [("inference.json + msc_only.json", "network_def")])
        self.assertEqual(loaders["models/segmentation/model.pt"],
                         [("inference.json + evaluate.json", "fid_network_def"), ("segment.json", "network_def")])
        configs = sorted((BUNDLES / "cellcascade" / "configs").glob("*.json"))
        found = package_bundle.networks_by_weights(configs, BUNDLES / "cellcascade")
        self.assertEqual([net for _, net in found["models/masks/model.pt"]], ["mask_network_def"])
        self.assertEqual([net for _, net in found["models/texture/model.pt"]], ["network_def"])

    def _assert_fails(self, bundles: Path, out: Path, pattern: str, **kwargs) -> None:
        with self.assertRaisesRegex(PackagingError, pattern):
            package_bundle.package_bundle("ecsd", out, bundles_dir=bundles, **kwargs)
        self.assertFalse(out.exists())  # nothing written

    def test_version_not_in_changelog(self):
        with tempfile.TemporaryDirectory() as tmp:
            bundles = bundle_copy(Path(tmp))
            meta_file = bundles / "ecsd" / "configs" / "metadata.json"
            meta = json.loads(meta_file.read_text())
            newest = meta["version"]
            meta["version"] = "9.9.9"
            meta_file.write_text(json.dumps(meta))
            self._assert_fails(bundles, Path(tmp) / "out",
                               rf"ecsd/configs/metadata\.json: version 9\.9\.9 is not the newest changelog entry "
                               rf"\({newest.replace('.', '[.]')}\)")
            meta["version"], meta["changelog"] = "0.1.0", {"0.1.0": "first", "0.10.0": "newer"}  # 10 > 9 > 1
            meta_file.write_text(json.dumps(meta))
            self._assert_fails(bundles, Path(tmp) / "out", r"version 0\.1\.0 is not the newest .*\(0\.10\.0\)")
            del meta["changelog"]
            meta_file.write_text(json.dumps(meta))
            self._assert_fails(bundles, Path(tmp) / "out", r"metadata\.json: no 'changelog'")

    def test_weights_that_do_not_fit(self):
        with tempfile.TemporaryDirectory() as tmp:
            weights = tiny_ecsd_weights(Path(tmp) / "small.pt")
            out = Path(tmp) / "out"
            # trained at a tiny width, packaged with the default configs
            self._assert_fails(BUNDLES, out, r"small\.pt does not fit network_def of configs/inference\.json: "
                                             r"checkpoint .*small\.pt does not fit ECSDUNet", weights=[str(weights)])
            # another network's weights
            torch.save(torch.nn.Linear(2, 2).state_dict(), Path(tmp) / "linear.pt")
            self._assert_fails(BUNDLES, out, r"linear\.pt does not fit network_def.*2 unexpected keys: bias, weight",
                               weights=[f"{Path(tmp) / 'linear.pt'}=models/model.pt"], settings=NETWORK_SETTINGS)
            # a place no config reads
            self._assert_fails(BUNDLES, out, r"small\.pt: no config of the bundle loads models/other\.pt",
                               weights=[f"{weights}=models/other.pt"], settings=NETWORK_SETTINGS)
            self._assert_fails(BUNDLES, out, r"missing\.pt: weights file not found",
                               weights=[str(Path(tmp) / "missing.pt")])
            self._assert_fails(BUNDLES, out, r"must be a relative path under models/", weights=[f"{weights}=../x.pt"])

    def test_bad_configs_and_settings(self):
        with tempfile.TemporaryDirectory() as tmp:
            bundles = bundle_copy(Path(tmp))
            out = Path(tmp) / "out"
            self._assert_fails(bundles, out, r"--set \['no_such_id'\]: no config of ecsd defines",
                               settings={"no_such_id": 1})
            inference = bundles / "ecsd" / "configs" / "inference.json"
            inference.write_text(inference.read_text()[:-10])
            self._assert_fails(bundles, out, r"ecsd/configs/inference\.json: does not parse")

    def test_command_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            weights = tiny_ecsd_weights(Path(tmp) / "small.pt")
            out = Path(tmp) / "out"
            self.assertEqual(package_bundle.main(["ecsd", "--out", str(out), "--weights", str(weights)]), 1)
            self.assertFalse(out.exists())
            settings = [arg for key, value in NETWORK_SETTINGS.items() for arg in ("--set", f"{key}={value}")]
            self.assertEqual(package_bundle.main(["ecsd", "--out", str(out), "--weights", str(weights), *settings]), 0)
            packed = zipfile.ZipFile(out / f"ecsd_v{version('ecsd')}.zip")
            inference = json.loads(packed.read("ecsd/configs/inference.json"))
            train = json.loads(packed.read("ecsd/configs/train.json"))
        for key, value in NETWORK_SETTINGS.items():
            self.assertEqual(inference[key], value)
            self.assertEqual(train[key], value)  # every config that defines the id


if __name__ == "__main__":
    unittest.main()
