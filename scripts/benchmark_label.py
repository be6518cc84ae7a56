"""MONAI Label server: start time and the latency of ``/infer/<bundle>`` on 512 x 512 ISBI 2012 slices.

Starts ``monailabel start_server`` on the app ``apps/emdiff`` from the MONAI Label environment (``.venv-label``,
README "MONAI Label") with the weights of ``<bundle_root>/<bundle>/models/model.pt`` (e.g. the ECSD demo's, with the
overlay ``demo.json``), waits for ``/info/``, then times ``--requests`` inference requests on slices of
``isbi2012_em/train-volume.tif`` and prints a table. Example (after ``bash scripts/demo_ecsd.sh``)::

    python scripts/benchmark_label.py --bundle ecsd --overlay demo.json --threads 2
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, timeout: float = 3600) -> bytes:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.read()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="ecsd", choices=["ecsd", "biedsnet"])
    parser.add_argument("--overlay", default=None, help="an overlay of the bundle's configs/, e.g. demo.json")
    parser.add_argument("--bundle-root", default=str(REPO / "bundles"), help="folder of <bundle>/models/model.pt")
    parser.add_argument("--label-env", default=str(REPO / ".venv-label"))
    parser.add_argument("--shared", default=os.environ.get("EMDIFF_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--slices", type=int, nargs="+", default=[20, 25], help="ISBI slices, one request each")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the server")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    monailabel = Path(args.label_env) / "bin" / "monailabel"
    model = Path(args.bundle_root) / args.bundle / "models" / "model.pt"
    volume_path = Path(args.shared) / "isbi2012_em" / "train-volume.tif"
    for path, what in ((monailabel, "the MONAI Label environment (README, 'MONAI Label')"), (model, "trained weights"),
                       (volume_path, "the ISBI 2012 volume")):
        if not path.is_file():
            sys.exit(f"benchmark_label: {path} does not exist ({what} is needed).")
    volume = tifffile.imread(volume_path)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        studies = tmp / "studies"
        studies.mkdir()
        for z in args.slices:
            tifffile.imwrite(studies / f"isbi_{z:02d}.tif", volume[z])
        overrides = tmp / "overrides.json"
        overrides.write_text(json.dumps({args.bundle: args.overlay} if args.overlay else {}))
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        command = [str(monailabel), "start_server", "--app", str(REPO / "apps" / "emdiff"), "--studies", str(studies),
                   "--conf", "models", args.bundle, "--conf", "bundle_root", str(args.bundle_root),
                   "--conf", "overrides", str(overrides), "--host", "127.0.0.1", "--port", str(port)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
               "PATH": f"{Path(args.label_env) / 'bin'}{os.pathsep}{os.environ['PATH']}",
               "MONAI_LABEL_SESSION_PATH": str(tmp / "sessions")}
        start = time.perf_counter()
        with open(tmp / "server.log", "w") as log:
            server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                if server.poll() is not None:
                    sys.exit(f"benchmark_label: the server exited:\n{(tmp / 'server.log').read_text()[-3000:]}")
                try:
                    urllib.request.urlopen(f"{url}/info/", timeout=5).read()
                    break
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.5)
                if time.perf_counter() - start > 600:
                    sys.exit("benchmark_label: no answer from /info/ within 600 s.")
            start_seconds = time.perf_counter() - start
            requests = []
            for z in args.slices:
                t = time.perf_counter()
                mask = tifffile.imread(io.BytesIO(_post(f"{url}/infer/{args.bundle}?image=isbi_{z:02d}&output=image")))
                requests.append({"slice": z, "seconds": time.perf_counter() - t, "shape": list(mask.shape),
                                 "dtype": str(mask.dtype), "foreground": float(np.mean(mask > 0))})
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    result = {"bundle": args.bundle, "overlay": args.overlay, "threads": args.threads, "server_start_s": start_seconds,
              "requests": requests}
    print(f"\nserver start (until /info/ answers): {start_seconds:.1f} s; OMP_NUM_THREADS={args.threads}")
    print("| request | image | seconds | mask |\n|---|---|---|---|")
    for i, r in enumerate(requests):
        print(f"| {i + 1} | ISBI slice {r['slice']}, 512 x 512 | {r['seconds']:.1f} | {r['shape']} {r['dtype']}, "
              f"{100 * r['foreground']:.0f} % foreground |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
