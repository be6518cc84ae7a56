"""The MONAI Label app (apps/emdiff) serves every segmentation bundle: ``monailabel start_server``, then the REST API.

Runs in the MONAI Label environment ``.venv-label`` (README, "MONAI Label"), which the main environment does not
have: skipped without it. Small models are trained first with each bundle's own training config
(``label_models.py``), which also writes each bundle's reference mask with ``monai.bundle.run``; the server must
answer ``/infer/<model>`` with that same mask, in the image's shape and geometry, and ``/train/<model>`` must write
new weights.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile
import torch

from emdiff_components.data import read_image, write_volume_dataset_json

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("EMDIFF_SHARED_DATA", REPO.parent / "shared" / "data"))
LABEL_ENV = Path(os.environ.get("EMDIFF_LABEL_ENV", REPO / ".venv-label"))
INSTALL = ("python3 -m venv .venv-label && .venv-label/bin/pip install -r requirements-label.txt && "
           ".venv-label/bin/pip install --no-deps -e . python-elf==0.9.2")

# small networks (the same ids in the served and the reference runs) and their short trainings
OVERRIDES = {
    "ecsd": {"channels": [8, 16, 32, 64], "attention_heads": 1, "attention_head_channels": 8, "filter_size": [64, 64],
             "patch_size": [64, 64], "use_checkpointing": False, "num_inference_steps": 2, "progress": False},
    "biedsnet": {"channels": [8, 16, 16, 32, 32], "num_res_blocks": 1, "image_size": [64, 64], "patch_size": [64, 64],
                 "val_num_inference_steps": 2, "num_inference_steps": 2, "num_samples": 2, "progress": False},
    # a few training steps leave the affinities near 0.4 (in-plane boundary 1 - a near 0.6): a watershed threshold of
    # 0.6 (paper 0.25) cuts them into many fragments, so that the compared label maps hold many ids
    "neurodiff": {"filters": [4, 6, 8, 10, 12], "patch_size": [8, 64, 64], "block_shape": [8, 32, 32],
                  "context": [2, 16, 16], "watershed": {"threshold": 0.6, "sigma_seeds": 2.0}, "progress": False},
    "cellcascade": {"features": [8, 8, 16, 32, 64, 8], "patch_size": [128, 128]},
}
TRAIN = {
    "ecsd": {"epochs": 30, "batch_size": 8, "learning_rate": 0.002, "val_fraction": 0.0},
    "biedsnet": {"epochs": 40, "batch_size": 6, "learning_rate": 0.002, "val_fraction": 0.0},
    "neurodiff": {"num_steps": 4, "epoch_length": 2, "batch_size": 1},
    "cellcascade": {"num_steps": 20, "epoch_length": 10, "batch_size": 2, "held_out": 2},
}
CROP = (slice(128, 384), slice(128, 384))  # 256 x 256 of the 512 x 512 ISBI slices
NIFTI_AFFINE = np.array([[0.0, 4.0, 0.0, 10.0], [4.0, 0.0, 0.0, -20.0], [0.0, 0.0, 50.0, 5.0], [0.0, 0.0, 0.0, 1.0]])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2.0 * float((pred & truth).sum()) / float(pred.sum() + truth.sum())


@unittest.skipUnless(
    (LABEL_ENV / "bin" / "monailabel").is_file() or os.environ.get("CI") == "true",  # CI (.ci/run) creates it: a must
    f"no MONAI Label environment at {LABEL_ENV} (not part of the main environment); create it with: {INSTALL}",
)
class TestMONAILabelApp(unittest.TestCase):
    """One server for all four bundles; setUpClass makes the requests in order (infer first, train last)."""

    @classmethod
    def setUpClass(cls):
        if not (LABEL_ENV / "bin" / "monailabel").is_file():
            raise AssertionError(f"no MONAI Label environment at {LABEL_ENV}; the README's test command makes it: {INSTALL}")
        if not SHARED.is_dir():
            if os.environ.get("CI") == "true":
                raise AssertionError(f"shared data folder {SHARED} is missing (set EMDIFF_SHARED_DATA)")
            raise unittest.SkipTest(f"shared data folder {SHARED} is missing")
        cls.tmp = Path(tempfile.mkdtemp(prefix="test_monailabel_"))
        cls.env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{LABEL_ENV / 'bin'}{os.pathsep}{os.environ['PATH']}",
                   "MONAI_LABEL_SESSION_PATH": str(cls.tmp / "sessions")}
        cls.server = None
        try:
            cls._prepare_data()
            cls._train_small_models()
            cls._start_server()
            cls._make_requests()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None and cls.server.poll() is None:
            os.killpg(cls.server.pid, signal.SIGTERM)
            try:
                cls.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(cls.server.pid, signal.SIGKILL)
                cls.server.wait()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # --- setup -------------------------------------------------------------------------------------------------------

    @classmethod
    def _prepare_data(cls):
        isbi = SHARED / "isbi2012_em"
        volume, labels = tifffile.imread(isbi / "train-volume.tif"), tifffile.imread(isbi / "train-labels.tif")
        studies, train = cls.tmp / "studies", cls.tmp / "train"
        (studies / "labels" / "final").mkdir(parents=True)
        for split in ("imagesTr", "labelsTr"):
            (train / "isbi" / split).mkdir(parents=True)
        # small models learn on slices 0-10; slice 20 is segmented, slices 24 and 26 are the datastore's labelled images
        for z in range(0, 12, 2):
            tifffile.imwrite(train / "isbi" / "imagesTr" / f"isbi_{z:02d}.tif", volume[z][CROP])
            tifffile.imwrite(train / "isbi" / "labelsTr" / f"isbi_{z:02d}.tif", labels[z][CROP])
        cls.isbi_image, cls.isbi_truth = volume[20][CROP], labels[20][CROP] > 0
        tifffile.imwrite(studies / "isbi_a.tif", cls.isbi_image)
        # the same pixels as NIfTI with a rotated, scaled, shifted affine: the answer must carry it
        nib.save(nib.Nifti1Image(np.ascontiguousarray(cls.isbi_image.T), NIFTI_AFFINE), studies / "isbi_b.nii.gz")
        for name, z in (("isbi_c", 24), ("isbi_d", 26)):
            tifffile.imwrite(studies / f"{name}.tif", volume[z][CROP])
            tifffile.imwrite(studies / "labels" / "final" / f"{name}.tif", labels[z][CROP])
        # NeuroDiff: FIB-SEM medulla volumes (train on one region, segment another)
        fibsem = SHARED / "fibsem_medulla_neurons_neuroproof"
        raw, ids = tifffile.imread(fibsem / "raw.tif"), tifffile.imread(fibsem / "neuron_ids.tif")
        for split in ("imagesTr", "labelsTr"):
            (train / "medulla" / split).mkdir(parents=True)
        box = (slice(0, 12), slice(0, 128), slice(0, 128))
        tifffile.imwrite(train / "medulla" / "imagesTr" / "medulla_a.tif", raw[box])
        tifffile.imwrite(train / "medulla" / "labelsTr" / "medulla_a.tif", ids[box])
        write_volume_dataset_json(train / "medulla", "medulla", (10.0, 10.0, 10.0))
        cls.medulla = raw[40:52, 100:196, 100:196]
        tifffile.imwrite(studies / "medulla.tif", cls.medulla)
        # CellCascade: a GOWT1 frame the network did not train on (held_out 2 keeps t52, t72 back)
        cls.gowt1_dir = SHARED / "ctc_2d_nuclei" / "Fluo-N2DH-GOWT1"
        cls.frame = tifffile.imread(cls.gowt1_dir / "img" / "t52.tif")[:256, :320]
        tifffile.imwrite(studies / "gowt1.tif", cls.frame)
        (cls.tmp / "frames").mkdir()
        tifffile.imwrite(cls.tmp / "frames" / "gowt1.tif", cls.frame)

    @classmethod
    def _train_small_models(cls):
        data = {"ecsd": cls.tmp / "train" / "isbi", "biedsnet": cls.tmp / "train" / "isbi",
                "neurodiff": cls.tmp / "train" / "medulla", "cellcascade": cls.gowt1_dir}
        inputs = {"ecsd": cls.tmp / "studies" / "isbi_a.tif", "biedsnet": cls.tmp / "studies" / "isbi_a.tif",
                  "neurodiff": cls.tmp / "studies" / "medulla.tif", "cellcascade": cls.tmp / "frames"}
        plan = {
            "bundles": str(REPO / "bundles"), "root": str(cls.tmp / "roots"), "reference": str(cls.tmp / "reference"),
            "models": {name: {"overrides": OVERRIDES[name], "train": {**TRAIN[name], "dataset_dir": str(data[name])},
                              "input": str(inputs[name])} for name in OVERRIDES},
        }
        (cls.tmp / "plan.json").write_text(json.dumps(plan))
        (cls.tmp / "overrides.json").write_text(json.dumps(OVERRIDES))
        with open(cls.tmp / "label_models.log", "w") as log:
            result = subprocess.run(
                [str(LABEL_ENV / "bin" / "python"), str(Path(__file__).with_name("label_models.py")),
                 str(cls.tmp / "plan.json")], check=False, env=cls.env, stdout=log, stderr=subprocess.STDOUT, timeout=900,
            )
        if result.returncode != 0:
            raise AssertionError("label_models.py failed:\n" + (cls.tmp / "label_models.log").read_text()[-4000:])

    @classmethod
    def _start_server(cls):
        cls.url = f"http://127.0.0.1:{_free_port()}"
        command = [str(LABEL_ENV / "bin" / "monailabel"), "start_server", "--app", str(REPO / "apps" / "emdiff"),
                   "--studies", str(cls.tmp / "studies"), "--conf", "models", "all",
                   "--conf", "bundle_root", str(cls.tmp / "roots"), "--conf", "overrides", str(cls.tmp / "overrides.json"),
                   "--host", "127.0.0.1", "--port", cls.url.rsplit(":", 1)[1]]
        cls.server_log = cls.tmp / "server.log"
        with open(cls.server_log, "w") as log:
            cls.server = subprocess.Popen(command, env=cls.env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if cls.server.poll() is not None:
                raise AssertionError(f"the server exited ({cls.server.returncode}):\n{cls._log_tail()}")
            try:
                cls.info = json.loads(cls._http("GET", "/info/")[1])
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1)
        raise AssertionError(f"no answer from {cls.url}/info/ within 300 s:\n{cls._log_tail()}")

    @classmethod
    def _make_requests(cls):
        cls.masks = {}
        for model, image in (("ecsd", "isbi_a"), ("ecsd", "isbi_b"), ("biedsnet", "isbi_a"), ("neurodiff", "medulla"),
                             ("cellcascade", "gowt1")):
            cls.masks[model, image] = cls._infer(model, image)
        cls.unknown_image = cls._http("POST", "/infer/ecsd?image=no_such_image&output=image", check=False)
        # a short training: 2 iterations from the served weights, on the two labelled ISBI slices
        cls.weights_before = torch.load(cls.tmp / "roots" / "ecsd" / "models" / "model.pt", weights_only=True)
        body = {"images": ["isbi_c", "isbi_d"], "epochs": 1,
                "overrides": {"train#trainer#epoch_length": 2, "batch_size": 1, "val_fraction": 0.0}}
        cls.train_status = cls._train("ecsd", body)
        cls.weights_after = torch.load(cls.tmp / "roots" / "ecsd" / "models" / "model.pt", weights_only=True)
        cls.mask_after_training = cls._infer("ecsd", "isbi_a")
        # run_sync: in the server process, so the refusal comes back at once (as HTTP 500; the log has the reason)
        cls.train_unlabelled = cls._http("POST", "/train/ecsd?run_sync=true", {"images": ["isbi_a"]}, check=False)

    @classmethod
    def _http(cls, method: str, path: str, body: dict | None = None, check: bool = True):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(cls.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as err:
            if check:
                raise AssertionError(f"{method} {path}: HTTP {err.code} {err.read()[:500]!r}\n{cls._log_tail()}") from err
            return err.code, err.read(), err.headers

    @classmethod
    def _infer(cls, model: str, image: str) -> Path:
        content, headers = cls._http("POST", f"/infer/{model}?image={image}&output=image")[1:]
        name = headers.get_filename() or f"{model}_{image}.bin"
        suffix = name[name.index("."):] if "." in name else ""
        answers = cls.tmp / "answers"
        answers.mkdir(exist_ok=True)
        path = answers / f"{model}_{image}_{len(list(answers.iterdir()))}{suffix}"
        path.write_bytes(content)
        return path

    @classmethod
    def _train(cls, model: str, body: dict) -> dict:
        cls._http("POST", f"/train/{model}", body)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(2)
            task = json.loads(cls._http("GET", "/train/")[1])
            if task.get("status") not in ("SUBMITTED", "RUNNING"):
                return task
        raise AssertionError(f"/train/{model} did not finish within 600 s:\n{cls._log_tail()}")

    @classmethod
    def _log_tail(cls) -> str:
        log = getattr(cls, "server_log", None)
        return log.read_text()[-4000:] if log is not None and log.is_file() else ""

    # --- tests -------------------------------------------------------------------------------------------------------

    def test_info_lists_every_bundle_for_infer_and_train(self):
        self.assertEqual(sorted(self.info["models"]), ["biedsnet", "cellcascade", "ecsd", "neurodiff"])
        self.assertEqual(sorted(self.info["trainers"]), ["biedsnet", "cellcascade", "ecsd", "neurodiff"])
        self.assertEqual(self.info["models"]["ecsd"]["labels"], {"foreground": 1})
        self.assertEqual(self.info["models"]["neurodiff"]["dimension"], 3)
        # the train options are the bundle's own length ids at their config values
        for model, config, key in (("ecsd", "train.json", "epochs"), ("cellcascade", "segment_train.json", "num_steps")):
            default = json.loads((REPO / "bundles" / model / "configs" / config).read_text())[key]
            self.assertEqual(self.info["trainers"][model]["config"], {"pretrained": True, key: default})

    def test_2d_masks_equal_the_bundle_run_and_segment(self):
        for model in ("ecsd", "biedsnet"):
            with self.subTest(model=model):
                served = read_image(self.masks[model, "isbi_a"])
                self.assertEqual(self.masks[model, "isbi_a"].suffix, ".tif")
                self.assertEqual((served.shape, served.dtype), (self.isbi_image.shape, np.uint8))
                reference = read_image(self.tmp / "reference" / model / "masks" / "isbi_a.tif")
                np.testing.assert_array_equal(served, reference)
                self.assertEqual(sorted(np.unique(served).tolist()), [0, 1])
                # the trained models find membranes (0) better than a random mask of the same size would
                membrane, truth = served == 0, ~self.isbi_truth
                p, q = membrane.mean(), truth.mean()
                self.assertGreater(_dice(membrane, truth), 2 * p * q / (p + q) + 0.05)

    def test_nifti_answer_keeps_the_affine(self):
        path = self.masks["ecsd", "isbi_b"]
        self.assertTrue(path.name.endswith(".nii.gz"), path.name)
        answer = nib.load(path)
        np.testing.assert_allclose(answer.affine, NIFTI_AFFINE)
        # same pixels as isbi_a.tif: the same mask, not transposed or flipped
        np.testing.assert_array_equal(read_image(path), read_image(self.masks["ecsd", "isbi_a"]))

    def test_instance_masks_equal_the_bundle_run(self):
        for model, image, folder, shape in (("neurodiff", "medulla", "waterz", self.medulla.shape),
                                            ("cellcascade", "gowt1", "masks", self.frame.shape)):
            with self.subTest(model=model):
                served = read_image(self.masks[model, image])
                self.assertEqual((served.shape, served.dtype), (shape, np.uint16))
                np.testing.assert_array_equal(served, read_image(self.tmp / "reference" / model / folder / f"{image}.tif"))
                self.assertGreater(len(np.unique(served)), 2)

    def test_unknown_image_is_refused_with_a_logged_reason(self):
        status, content, _ = self.unknown_image
        self.assertEqual((status, content), (500, b"Internal Server Error"))  # MONAI Label sends no detail
        self.assertIn("ecsd: no image file '' on the server", self.server_log.read_text())

    def test_train_two_iterations_writes_new_weights_from_the_served_ones(self):
        self.assertEqual(self.train_status["status"], "DONE", self.train_status.get("details"))
        self.assertEqual(self.weights_before.keys(), self.weights_after.keys())
        changed = [k for k in self.weights_before if not torch.equal(self.weights_before[k], self.weights_after[k])]
        self.assertTrue(changed)
        # 2 small steps from the served weights (pretrained), not from a new initialisation
        before = torch.cat([v.flatten().float() for v in self.weights_before.values()])
        after = torch.cat([v.flatten().float() for v in self.weights_after.values()])
        self.assertLess(float((after - before).norm() / before.norm()), 0.05)
        served = read_image(self.mask_after_training)
        self.assertEqual((served.shape, served.dtype), (self.isbi_image.shape, np.uint8))

    def test_train_on_an_unlabelled_image_fails_naming_it(self):
        self.assertEqual(self.train_unlabelled[0], 500)
        self.assertIn("ecsd: train request images ['isbi_a'] have no final label; labelled: ['isbi_c', 'isbi_d']",
                      self.server_log.read_text())


if __name__ == "__main__":
    unittest.main()
