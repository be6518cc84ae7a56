"""Package a bundle as a MONAI model-zoo zip that ``python -m monai.bundle download --url`` installs.

Usage::

    python scripts/package_bundle.py ecsd --out dist --weights runs/ecsd/model.pt
    python scripts/package_bundle.py cellcascade --out dist \\
        --weights runs/masks/model.pt=models/masks/model.pt --weights runs/texture/model.pt=models/texture/model.pt
    python scripts/package_bundle.py neurodiff --out dist --large-files https://host/neurodiff.pt=models/model.pt
    python scripts/package_bundle.py ecsd --out dist --weights small.pt --set channels=[32,64,128,256]

writes ``DIR/NAME_vVERSION.zip`` in the model-zoo layout (``NAME/configs/*``, ``NAME/docs/*``, ``NAME/LICENSE``,
``NAME/models/...``, ``NAME/large_files.yml``; MONAI's ``download`` extracts it with ``has_base=True``, so the top
folder is the bundle). Only configs, docs, LICENSE and the weights named here are packed: never ``outputs/``,
``demo_data/``, ``__pycache__`` or whatever else ``models/`` holds.

``--weights SRC[=DEST]`` packs a local file as ``DEST`` (default ``models/model.pt``). ``--large-files URL[=DEST]``
leaves the file where it is hosted and lists it in ``large_files.yml`` in the format of MONAI's
``download_large_files`` (``path``, ``url``, ``hash_val``, ``hash_type``; sha256 here); the file is downloaded once
to check it and compute its hash. ``--set ID=VALUE`` (VALUE as JSON, else a string) rewrites a top-level id in every
config that defines it, e.g. the width the weights were trained with.

Checked before anything is written (``PackagingError`` naming the file and the problem otherwise):

- ``configs/metadata.json`` has ``version`` and a ``changelog`` whose newest entry is that version;
- every config parses with ``monai.bundle.ConfigParser``;
- every weights file is loaded (``<prefix>ckpt_path``) by some config, and loads strictly into the
  ``<prefix>network_def`` of every config that loads it (``ckpt_path`` -> ``network_def``, ``mask_ckpt_path`` ->
  ``mask_network_def``); overlays are read on top of ``inference.json`` and ``train.json``.

The zip is written atomically. Importable: ``package_bundle(name, out_dir, weights, large_files, settings)``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from monai.apps.utils import download_url
from monai.bundle import ConfigParser

from emdiff_components.engines import CheckpointError, load_network_weights
from emdiff_components.utils import atomic_write

logger = logging.getLogger("package_bundle")

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
# folders and files of a bundle that are packed; everything else (outputs/, demo_data/, models/ ...) is not
PACKED = ("configs", "docs", "LICENSE")
SKIPPED_NAMES = ("__pycache__", ".DS_Store")
# configs that overlays extend, tried in this order when an overlay cannot be resolved alone
BASE_CONFIGS = ("inference.json", "train.json")
DEFAULT_WEIGHTS_PATH = "models/model.pt"
HASH_TYPE = "sha256"


class PackagingError(ValueError):
    """A bundle that cannot be packaged: bad metadata, a config that does not parse, weights that do not fit."""


def _version_key(version: str, meta_file: Path) -> tuple[int, ...]:
    """``"1.2.3"`` -> (1, 2, 3), the order of model-zoo versions."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        raise PackagingError(f"{meta_file}: {version!r} is not a version MAJOR.MINOR.PATCH.") from None


def check_metadata(meta_file: Path) -> str:
    """The bundle's version, after checking that ``changelog``'s newest entry (by version order) is that version."""
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PackagingError(f"{meta_file}: cannot be read as JSON: {err}") from err
    version, changelog = meta.get("version"), meta.get("changelog")
    if not isinstance(version, str) or not version:
        raise PackagingError(f"{meta_file}: no 'version' string.")
    if not isinstance(changelog, dict) or not changelog:
        raise PackagingError(f"{meta_file}: no 'changelog' (a mapping of version to what changed).")
    newest = max(changelog, key=lambda v: _version_key(v, meta_file))
    if _version_key(newest, meta_file) != _version_key(version, meta_file):
        raise PackagingError(
            f"{meta_file}: version {version} is not the newest changelog entry ({newest}); add a changelog entry "
            f"for {version} or set the version."
        )
    return version


def parse_weights_spec(spec: str, default_dest: str = DEFAULT_WEIGHTS_PATH) -> tuple[str, str]:
    """``"SRC=DEST"`` or ``"SRC"`` -> (SRC, DEST); DEST must be a relative path under ``models/``."""
    source, _, dest = spec.rpartition("=") if "=" in spec else (spec, "", default_dest)
    dest = Path(dest).as_posix()
    if Path(dest).is_absolute() or ".." in Path(dest).parts or not dest.startswith("models/"):
        raise PackagingError(f"{spec}: the destination {dest!r} must be a relative path under models/.")
    return source, dest


def parse_setting(spec: str) -> tuple[str, object]:
    """``"ID=VALUE"`` -> (ID, VALUE parsed as JSON, or the string itself when it is not JSON)."""
    key, sep, value = spec.partition("=")
    if not sep or not key:
        raise PackagingError(f"--set {spec!r}: expected ID=VALUE.")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _copy_tree(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(*SKIPPED_NAMES, "*.pyc"))


def stage_bundle(bundle: Path, stage: Path, settings: Mapping[str, object]) -> list[Path]:
    """Copy the packed parts of ``bundle`` into ``stage`` with ``settings`` written into the configs.

    Returns:
        the staged config files (JSON / YAML, ``metadata.json`` included).
    """
    for part in PACKED:
        if not (bundle / part).exists():
            raise PackagingError(f"{bundle / part}: missing (a bundle has configs/, docs/ and LICENSE).")
        if (bundle / part).is_dir():
            _copy_tree(bundle / part, stage / part)
        else:
            shutil.copy2(bundle / part, stage / part)
    configs = sorted(p for p in (stage / "configs").iterdir() if p.suffix in CONFIG_SUFFIXES)
    unused = dict(settings)
    for path in configs:
        if path.name == "metadata.json" or not settings:
            continue
        content = ConfigParser.load_config_file(str(path))
        hits = {k: v for k, v in settings.items() if k in content}
        if hits:
            content.update(hits)
            if path.suffix == ".json":
                path.write_text(json.dumps(content, indent=4, ensure_ascii=False) + "\n")
            else:
                path.write_text(yaml.safe_dump(content, sort_keys=False))
            for key in hits:
                unused.pop(key, None)
    if unused:
        raise PackagingError(f"--set {sorted(unused)}: no config of {bundle.name} defines these ids.")
    return configs


def _parses(files: Sequence[Path]) -> Exception | None:
    try:
        parser = ConfigParser()
        parser.read_config([str(f) for f in files])
        parser.parse()
    except Exception as err:  # noqa: BLE001 - any error of MONAI's reader or parser is the answer, reported as is
        return err
    return None


def check_configs_parse(configs: Sequence[Path], names: Mapping[Path, Path]) -> None:
    """Every config reads and parses with ``ConfigParser``: alone, or, for an overlay (ids such as
    ``train#dataloader#sampler``), on top of ``inference.json``, ``train.json`` or, failing those, another config of the
    bundle (CellCascade's ``multi_gpu_train.json`` extends ``train_masks.json``). References are resolved later, per
    network."""
    bases = [p for name in BASE_CONFIGS for p in configs if p.name == name]
    bases += [p for p in configs if p not in bases and p.suffix == ".json" and p.name != "metadata.json"]
    for path in configs:
        err = _parses([path])
        if err is not None and not any(_parses([base, path]) is None for base in bases if base != path):
            raise PackagingError(f"{names.get(path, path)}: does not parse with monai.bundle.ConfigParser: {err!r}")


def _candidate_configs(configs: Sequence[Path]) -> list[list[Path]]:
    """Config combinations that may load weights: every config alone, then every other one on top of a base."""
    by_name = {p.name: p for p in configs if p.name != "metadata.json"}
    alone = [[p] for p in by_name.values()]
    overlays = [[by_name[base], p] for base in BASE_CONFIGS if base in by_name for p in by_name.values()
                if p.name != base]
    return alone + overlays


def networks_by_weights(configs: Sequence[Path], bundle_root: Path) -> dict[str, list[tuple[list[Path], str]]]:
    """Weights path relative to the bundle (``models/...``) -> every (config files, network id) that loads it.

    A config loads ``<prefix>ckpt_path`` into ``<prefix>network_def``. A path id counts where it is defined: alone,
    or in an overlay on top of its first base that resolves it; combinations whose path expression cannot be
    evaluated (an overlay alone, say) are skipped.
    """
    found: dict[str, list[tuple[list[Path], str]]] = {}
    seen = set()
    for files in _candidate_configs(configs):
        if _parses(files) is not None:  # an overlay alone or on top of a config it does not extend
            continue
        parser = ConfigParser()
        parser.read_config([str(f) for f in files])
        parser["bundle_root"] = str(bundle_root)
        own_ids = ConfigParser.load_config_file(str(files[-1]))
        for key in own_ids:
            net_id = key[: -len("ckpt_path")] + "network_def"
            if not key.endswith("ckpt_path") or net_id not in parser or (files[-1].name, key) in seen:
                continue
            try:
                path = Path(str(parser.get_parsed_content(key)))
                relative = path.resolve().relative_to(bundle_root.resolve()).as_posix()
            except Exception as err:  # noqa: BLE001 - an overlay whose references live elsewhere, a path outside
                logger.debug("%s: %s not resolved here: %s", " + ".join(f.name for f in files), key, err)
                continue
            seen.add((files[-1].name, key))
            found.setdefault(relative, []).append((list(files), net_id))
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_weights(
    weights_file: Path, shown: str, dest: str, stage: Path, loaders: Mapping[str, list[tuple[list[Path], str]]]
) -> None:
    """``weights_file`` (``shown`` in errors) loads strictly into the network of every config that loads ``dest``."""
    if dest not in loaders:
        known = ", ".join(sorted(loaders)) or "none"
        raise PackagingError(f"{shown}: no config of the bundle loads {dest} (the configs load: {known}).")
    for files, net_id in loaders[dest]:
        names = " + ".join(f"configs/{f.name}" for f in files)
        parser = ConfigParser()
        parser.read_config([str(f) for f in files])
        parser["bundle_root"] = str(stage)
        try:
            network = parser.get_parsed_content(net_id)
        except Exception as err:
            raise PackagingError(f"{names}: cannot build {net_id} to check {shown}: {err}") from err
        try:
            load_network_weights(network, weights_file)
        except CheckpointError as err:
            raise PackagingError(f"{shown} does not fit {net_id} of {names}: {err}") from err


def _write_zip(stage: Path, name: str, zip_path: Path) -> None:
    """Zip ``stage`` under the top folder ``name``, atomically (no half-written zip under the final name)."""
    with atomic_write(zip_path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(stage.rglob("*")):
            if path.is_file():
                archive.write(path, f"{name}/{path.relative_to(stage).as_posix()}")


def package_bundle(
    name: str,
    out_dir: str | os.PathLike,
    weights: Sequence[str] = (),
    large_files: Sequence[str] = (),
    settings: Mapping[str, object] | None = None,
    bundles_dir: str | os.PathLike = BUNDLES,
) -> Path:
    """Check bundle ``name`` and write ``out_dir/NAME_vVERSION.zip``; returns the zip's path.

    Args:
        name: the bundle's folder name under ``bundles_dir``.
        out_dir: where the zip is written (created).
        weights: ``"SRC[=DEST]"`` local files packed as ``DEST`` (default ``models/model.pt``).
        large_files: ``"URL[=DEST]"`` files listed in ``large_files.yml`` (downloaded once to check and hash).
        settings: top-level config ids to rewrite in every config that defines them.
        bundles_dir: folder of the bundles; default the repository's ``bundles/``.
    """
    bundle = Path(bundles_dir) / name
    if not (bundle / "configs").is_dir():
        raise PackagingError(f"{bundle}: not a bundle (no configs/ folder).")
    version = check_metadata(bundle / "configs" / "metadata.json")
    local = [parse_weights_spec(s) for s in weights]
    hosted = [parse_weights_spec(s) for s in large_files]
    dests = [d for _, d in local + hosted]
    if len(set(dests)) != len(dests):
        raise PackagingError(f"two weights files go to the same place: {sorted(dests)}.")
    for source, _ in local:
        if not Path(source).is_file():
            raise PackagingError(f"{source}: weights file not found.")
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / name
        stage.mkdir()
        configs = stage_bundle(bundle, stage, settings or {})
        check_configs_parse(configs, {p: bundle / "configs" / p.name for p in configs})
        loaders = networks_by_weights(configs, stage) if local or hosted else {}
        for source, dest in local:
            check_weights(Path(source), source, dest, stage, loaders)
        entries = []
        for url, dest in hosted:
            downloaded = Path(tmp) / "large_files" / dest
            try:
                download_url(url=url, filepath=downloaded, progress=False)
            except Exception as err:
                raise PackagingError(f"{url}: cannot be downloaded: {err}") from err
            check_weights(downloaded, url, dest, stage, loaders)
            entries.append({"path": dest, "url": url, "hash_val": _sha256(downloaded), "hash_type": HASH_TYPE})
        # all checks passed: assemble and write
        for source, dest in local:
            (stage / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, stage / dest)
        if entries:
            (stage / "large_files.yml").write_text(yaml.safe_dump({"large_files": entries}, sort_keys=False))
        zip_path = Path(out_dir) / f"{name}_v{version}.zip"
        _write_zip(stage, name, zip_path)
    logger.info("wrote %s (%d packed weights, %d large files)", zip_path, len(local), len(entries))
    return zip_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="bundle folder name under bundles/ (ecsd, biedsnet, neurodiff, cellcascade)")
    parser.add_argument("--out", required=True, help="folder of the zip")
    parser.add_argument("--weights", action="append", default=[], metavar="SRC[=DEST]",
                        help=f"local weights packed as DEST (default {DEFAULT_WEIGHTS_PATH}); repeatable")
    parser.add_argument("--large-files", action="append", default=[], metavar="URL[=DEST]",
                        help="hosted weights listed in large_files.yml; repeatable")
    parser.add_argument("--set", action="append", default=[], metavar="ID=VALUE", dest="settings",
                        help="rewrite a top-level config id (VALUE as JSON) in every config defining it; repeatable")
    parser.add_argument("--bundles-dir", default=str(BUNDLES), help="folder of the bundles (default: the repo's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = dict(parse_setting(s) for s in args.settings)
        zip_path = package_bundle(args.name, args.out, args.weights, args.large_files, settings, args.bundles_dir)
    except PackagingError as err:
        logger.error("error: %s", err)
        return 1
    logger.info("%s", zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
