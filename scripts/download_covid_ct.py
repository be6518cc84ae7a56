"""Download a public COVID-19 CT infection segmentation set and write it in the MSD layout as NIfTI.

``--dataset medseg``: MedSeg "COVID-19 CT segmentation dataset" (https://medicalsegmentation.com/covid19/; Italian
Society of Medical and Interventional Radiology (SIRM) images segmented by a radiologist), published on figshare as
"MedSeg Covid Dataset 1", doi:10.6084/m9.figshare.13521488.v2. 100 axial CT slices of > 40 patients in
``tr_im.nii.gz`` (512 x 512 x 100, HU), labels in ``tr_mask.nii.gz`` (0 background, 1 ground-glass opacity,
2 consolidation, 3 pleural effusion) and 10 unlabelled slices in ``val_im.nii.gz``. The default download is
figshare's zip of the whole record (``MEDSEG_URL``); it is assembled on request, so no SHA-256 of it is published:
each of the three files is checked instead against the figshare MD5 (``MEDSEG_MD5``, as listed by a public MedSeg
loader; ``--md5 none`` skips it). The single files are also at ``MEDSEG_FILE_URLS``; ``--archive`` takes the zip or a
folder holding the three files. Every slice becomes one 2D case::

    OUT/imagesTr/medseg_tr_000.nii.gz ... _099   OUT/labelsTr/medseg_tr_000.nii.gz ...   (tr_im / tr_mask slices)
    OUT/imagesTs/medseg_val_000.nii.gz ... _009                                           (val_im, no labels)

Labels (``--classes``): ``binary`` (default) = infection, ground-glass and consolidation merged into 1, pleural
effusion to background. That is what Inf-Net does (Fan D.-P. et al. "Inf-Net: Automatic COVID-19 lung infection
segmentation from CT images", IEEE TMI 39(8):2626-2637, 2020): its binary infection masks of these slices are the
union of its ground-glass and consolidation masks, and effusion is fluid in the pleural space, not lung infection.
``--include-effusion`` counts effusion as infection too. ``multiclass`` keeps 0..3.

``--dataset covid19_ct_seg``: Ma J., Wang Y., An X., et al. "Towards efficient COVID-19 CT annotation: a benchmark
for lung and infection segmentation", arXiv:2004.12537 (Med. Phys. 48(3):1197-1210, 2021, doi:10.1002/mp.14676);
data: Zenodo record 3757476 (doi:10.5281/zenodo.3757476, CC BY 4.0). 20 CT volumes ``COVID-19-CT-Seg_20cases.zip``
(``coronacases_*.nii.gz``, ``radiopaedia_*.nii.gz``) and their 0/1 infection masks ``Infection_Mask.zip`` (same
names; ``--mask-url --mask-sha256 --mask-archive`` mirror ``--url --sha256 --archive``). The volumes stay 3D (the
bundles take axial slices themselves); the last ``--num-test`` (default 4) cases in natural name order go to Ts::

    OUT/imagesTr/coronacases_001.nii.gz ...   OUT/labelsTr/coronacases_001.nii.gz ...   (uint8 0/1)
    OUT/imagesTs/radiopaedia_40_86625_0.nii.gz ...   OUT/labelsTs/...

The BIEDSNet paper's COVID-19 set ("20 cases", slices of 512 x 512 and 630 x 630) matches this one. Its two
archives are checked against the SHA-256 published by torch_em (``torch_em/data/datasets/medical/covid19_seg.py``).

Both: ``OUT/dataset.json`` is written last and marks a complete run. Files are written with nibabel from the source
header (affine, zooms, units, intensity scaling), so ``read_voxel_size`` gives the source spacing; the package's
``write_layout`` writes TIFF and keeps no spacing, hence the small NIfTI writer here. Images keep their stored
values (HU); CT volumes are copied byte for byte. ``--sha256 none`` only computes and logs a checksum. Usage::

    python scripts/download_covid_ct.py --dataset medseg --out data/covid_medseg [--classes multiclass]
    python scripts/download_covid_ct.py --dataset medseg --out data/covid_medseg --archive ~/Downloads/medseg/
    python scripts/download_covid_ct.py --dataset covid19_ct_seg --out data/covid19_ct_seg [--num-test 4]
    python scripts/download_covid_ct.py --dataset covid19_ct_seg --out data/covid19_ct_seg \\
        --archive COVID-19-CT-Seg_20cases.zip --mask-archive Infection_Mask.zip
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from emdiff_components.data import add_archive_arguments, fetch_archive, sha256sum, write_dataset_json
from emdiff_components.utils import atomic_write, natural_sort_key

__all__ = [
    "DATASETS",
    "MEDSEG_URL",
    "MEDSEG_FILE_URLS",
    "MEDSEG_MD5",
    "MEDSEG_CLASSES",
    "COVID19_CT_SEG_URL",
    "COVID19_CT_SEG_SHA256",
    "COVID19_CT_SEG_MASK_URL",
    "COVID19_CT_SEG_MASK_SHA256",
    "convert_medseg",
    "convert_covid19_ct_seg",
    "main",
]

logger = logging.getLogger("download_covid_ct")

DATASETS = ("medseg", "covid19_ct_seg")
MEDSEG_URL = "https://figshare.com/ndownloader/articles/13521488/versions/2"
MEDSEG_FILE_URLS = {
    "tr_im.nii.gz": "https://ndownloader.figshare.com/files/25953977",
    "tr_mask.nii.gz": "https://ndownloader.figshare.com/files/25953980",
    "val_im.nii.gz": "https://ndownloader.figshare.com/files/25953983",
}
MEDSEG_MD5 = {
    "tr_im.nii.gz": "54f82e3a9ac01bf6cc2300ca53d820ae",
    "tr_mask.nii.gz": "d11996de45d06d332658115d8b3cf6fc",
    "val_im.nii.gz": "098e8ab8b2e85f7c66abf8a92721ee95",
}
MEDSEG_CLASSES = {"background": 0, "ground_glass": 1, "consolidation": 2, "pleural_effusion": 3}
COVID19_CT_SEG_URL = "https://zenodo.org/records/3757476/files/COVID-19-CT-Seg_20cases.zip?download=1"
COVID19_CT_SEG_SHA256 = "a5060480eff9315b069b086312dac4872777901fb80d268a5a83edd9f4e7b440"
COVID19_CT_SEG_MASK_URL = "https://zenodo.org/records/3757476/files/Infection_Mask.zip?download=1"
COVID19_CT_SEG_MASK_SHA256 = "87901c73fdd2230260e61d2dbc57bf56026efc28264006b8ea2bf411453c1694"

_NIFTI_EXTENSIONS = (".nii.gz", ".nii")
_MEDSEG_TRAIN, _MEDSEG_MASK, _MEDSEG_TEST = "tr_im.nii.gz", "tr_mask.nii.gz", "val_im.nii.gz"


def _open_zip(path: str | os.PathLike, what: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(
            f"download_covid_ct: {os.fspath(path)!r} is not a readable zip archive ({what}): {err}"
        ) from err


def _nifti_members(archive: zipfile.ZipFile) -> dict[str, str]:
    """File name -> member for the NIfTI files of ``archive`` at any depth; skips folders and macOS metadata."""
    found: dict[str, str] = {}
    for member in archive.namelist():
        base = os.path.basename(member)
        hidden = "__MACOSX" in member or base.startswith(".")
        if member.endswith("/") or hidden or not base.lower().endswith(_NIFTI_EXTENSIONS):
            continue
        if base in found:
            raise ValueError(
                f"download_covid_ct: {archive.filename!r} holds {base!r} twice: {found[base]!r}, {member!r}."
            )
        found[base] = member
    return found


def _md5(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # integrity check against a published MD5, not security
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load(path: str, what: str):
    try:
        return nib.load(path)
    except Exception as err:  # noqa: BLE001 - nibabel raises several types for a broken file
        raise ValueError(f"download_covid_ct: cannot read {what} as NIfTI: {type(err).__name__}: {err}") from err


def _save_nifti(path: str, raw: np.ndarray, source, affine: np.ndarray, label: bool) -> None:
    """Write ``raw`` (NIfTI axis order) with ``source``'s header: units and, for images, dtype and HU scaling.

    Images get the stored (unscaled) values plus the source's slope / intercept, so they read back bit-exactly;
    labels are written as uint8 without scaling.
    """
    header = source.header.copy()
    image = nib.Nifti1Image(raw, affine, header=header) if isinstance(header, nib.Nifti1Header) else nib.Nifti2Image(
        raw, affine, header=header
    )
    if label:
        image.set_data_dtype(np.uint8)
        image.header.set_slope_inter(1.0, 0.0)
    else:
        image.set_data_dtype(source.get_data_dtype())
        image.header.set_slope_inter(source.dataobj.slope, source.dataobj.inter)
    with atomic_write(path) as tmp:  # the temporary name keeps .nii.gz: nibabel picks gzip from the name
        nib.save(image, str(tmp))


def _check_labels(mask: np.ndarray, allowed: set[int], what: str) -> np.ndarray:
    """Class indices as uint8; raises when a value is not one of ``allowed``."""
    values = np.unique(mask)
    ok = np.isin(values, sorted(allowed))  # False for NaN and non-integers too
    if not ok.all():
        bad = values[~ok][:10].tolist()
        raise ValueError(f"download_covid_ct: {what} holds values {bad}; expected {sorted(allowed)}.")
    return mask.astype(np.uint8)


def _medseg_label_map(classes: str, include_effusion: bool) -> np.ndarray:
    """Lookup table MedSeg class -> written class."""
    if classes == "multiclass":
        return np.array([0, 1, 2, 3], dtype=np.uint8)
    return np.array([0, 1, 1, 1 if include_effusion else 0], dtype=np.uint8)


def _medseg_files(source: str, tmp: str, md5: dict[str, str] | None) -> dict[str, str]:
    """Paths of the three MedSeg files, from a folder or extracted from a zip, checked against ``md5``."""
    names = (_MEDSEG_TRAIN, _MEDSEG_MASK, _MEDSEG_TEST)
    paths: dict[str, str] = {}
    if os.path.isdir(source):
        for name in names:
            paths[name] = os.path.join(source, name)
            if not os.path.isfile(paths[name]):
                raise ValueError(f"download_covid_ct: folder {source!r} has no {name!r} (MedSeg needs {list(names)}).")
    else:
        with _open_zip(source, "MedSeg Covid Dataset 1") as archive:
            members = _nifti_members(archive)
            for name in names:
                if name not in members:
                    raise ValueError(
                        f"download_covid_ct: {source!r} has no {name!r}; is it the MedSeg Covid Dataset 1 archive "
                        f"(figshare 13521488)? NIfTI files found: {sorted(members)[:10]}."
                    )
                paths[name] = archive.extract(members[name], tmp)
    for name, path in paths.items():
        if md5 is not None and name in md5:
            digest = _md5(path)
            if digest != md5[name].lower():
                raise ValueError(
                    f"download_covid_ct: MD5 of {name!r} from {source!r} is {digest}, the published one is "
                    f"{md5[name]}; pass --md5 none to skip the check."
                )
            logger.info("%s: MD5 ok", name)
    return paths


def _slice_affine(affine: np.ndarray, z: int) -> np.ndarray:
    """Affine of slice ``z`` of a volume: the origin moves to that slice."""
    shift = np.eye(4)
    shift[2, 3] = z
    return affine @ shift


def convert_medseg(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    classes: str = "binary",
    include_effusion: bool = False,
    md5: dict[str, str] | None = None,
) -> str:
    """Write MedSeg Covid Dataset 1 as one 2D NIfTI case per axial slice.

    Args:
        source: figshare's zip of the record, or a folder holding ``tr_im.nii.gz``, ``tr_mask.nii.gz`` and
            ``val_im.nii.gz``.
        out_dir: output dataset folder.
        classes: ``"binary"`` (default; infection = ground-glass + consolidation) or ``"multiclass"`` (0..3).
        include_effusion: binary only: count pleural effusion (3) as infection; default False (background).
        md5: file name -> expected MD5 (e.g. ``MEDSEG_MD5``); default None: no check.

    Returns:
        ``out_dir`` as an absolute path string.

    Raises:
        ValueError: bad ``classes`` / ``include_effusion``, a missing or unreadable file, an MD5 mismatch, image and
            mask of different shapes, or mask values outside 0..3; all checked before anything is written.
    """
    if classes not in ("binary", "multiclass"):
        raise ValueError(f"convert_medseg: classes must be 'binary' or 'multiclass', got {classes!r}.")
    if include_effusion and classes != "binary":
        raise ValueError("convert_medseg: include_effusion applies to classes='binary' only.")
    source, root = os.fspath(source), os.path.abspath(os.fspath(out_dir))
    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".extract") as tmp:
        paths = _medseg_files(source, tmp, md5)
        images = {name: _load(paths[name], f"{name!r} of {source!r}") for name in (_MEDSEG_TRAIN, _MEDSEG_TEST)}
        mask_image = _load(paths[_MEDSEG_MASK], f"{_MEDSEG_MASK!r} of {source!r}")
        train = images[_MEDSEG_TRAIN]
        for name, image in (*images.items(), (_MEDSEG_MASK, mask_image)):
            if len(image.shape) != 3:
                raise ValueError(f"download_covid_ct: {name!r} of {source!r} has shape {image.shape}; expected 3D.")
        if mask_image.shape != train.shape:
            raise ValueError(
                f"download_covid_ct: {_MEDSEG_TRAIN!r} has shape {train.shape} but {_MEDSEG_MASK!r} has "
                f"{mask_image.shape} ({source!r})."
            )
        mask = _check_labels(np.asanyarray(mask_image.dataobj), {0, 1, 2, 3}, f"{_MEDSEG_MASK!r} of {source!r}")
        label = _medseg_label_map(classes, include_effusion)[mask]
        for split, prefix, name in (("Tr", "medseg_tr", _MEDSEG_TRAIN), ("Ts", "medseg_val", _MEDSEG_TEST)):
            image = images[name]
            raw = np.asanyarray(image.dataobj.get_unscaled())
            for z in range(raw.shape[2]):
                case = f"{prefix}_{z:03d}.nii.gz"
                affine = _slice_affine(image.affine, z)
                _save_nifti(os.path.join(root, f"images{split}", case), raw[:, :, z], image, affine, label=False)
                if split == "Tr":
                    _save_nifti(os.path.join(root, "labelsTr", case), label[:, :, z], mask_image, affine, label=True)
            logger.info("%s: %d slices of %s from %s", split, raw.shape[2], raw.shape[:2], name)
    fractions = np.bincount(label.ravel(), minlength=label.max() + 1) / label.size
    logger.info("label fractions %s", np.round(fractions, 4).tolist())
    names = MEDSEG_CLASSES if classes == "multiclass" else {"background": 0, "infection": 1}
    merge = "ground-glass + consolidation" + (" + pleural effusion" if include_effusion else "")
    write_dataset_json(
        root, "covid19_medseg", names,
        description="MedSeg COVID-19 CT segmentation dataset (SIRM CT, HU), one 2D NIfTI per axial slice; val_im "
        "slices (unlabelled) as test; " + ("labels 0..3" if classes == "multiclass" else f"infection = {merge}"),
        reference="MedSeg / SIRM, COVID-19 CT segmentation dataset, https://medicalsegmentation.com/covid19/, "
        "doi:10.6084/m9.figshare.13521488.v2",
        licence="see https://medicalsegmentation.com/covid19/ and the figshare record (CC0 as listed there)",
        modality="CT",
    )
    return root


def _member_shape(archive: zipfile.ZipFile, member: str) -> tuple[int, ...]:
    """Data shape from the NIfTI header at the start of a zip member, without extracting the volume."""
    with archive.open(member) as raw:
        stream = gzip.GzipFile(fileobj=raw) if member.lower().endswith(".gz") else raw
        try:
            head = stream.read(nib.Nifti2Header.sizeof_hdr)
        except OSError as err:
            raise ValueError(f"download_covid_ct: cannot decompress {member!r} of {archive.filename!r}: {err}") from err
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        try:
            return tuple(int(n) for n in klass(binaryblock=head[: klass.sizeof_hdr], check=True).get_data_shape())
        except Exception:  # noqa: BLE001, S112 - try the next NIfTI version
            continue
    raise ValueError(f"download_covid_ct: {member!r} of {archive.filename!r} has no NIfTI header.")


def _copy_member(archive: zipfile.ZipFile, member: str, path: str) -> None:
    with atomic_write(path) as tmp, archive.open(member) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _patient(name: str) -> str:
    """Patient of a COVID-19-CT-Seg case: ``radiopaedia_<case>_<study>_<series>`` -> ``radiopaedia_<case>``."""
    match = re.match(r"(radiopaedia_\d+)_", name)
    return match.group(1) if match else name


def convert_covid19_ct_seg(
    image_archive: str | os.PathLike,
    mask_archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    num_test: int = 4,
) -> str:
    """Write COVID-19-CT-Seg (20 CT volumes + infection masks) as 3D NIfTI cases.

    Args:
        image_archive: ``COVID-19-CT-Seg_20cases.zip``.
        mask_archive: ``Infection_Mask.zip`` (0/1 masks of the same names).
        out_dir: output dataset folder.
        num_test: the last ``num_test`` cases in natural name order go to ``imagesTs``/``labelsTs``; default 4,
            0 <= num_test <= number of cases.

    Returns:
        ``out_dir`` as an absolute path string.

    Raises:
        ValueError: an archive that is not a zip or holds no NIfTI, an image without mask (or mask without image),
            image / mask shapes that differ (checked from the headers before anything is written), mask values
            other than 0/1, or a bad ``num_test``.
    """
    if isinstance(num_test, bool) or not isinstance(num_test, (int, np.integer)) or num_test < 0:
        raise ValueError(f"convert_covid19_ct_seg: num_test must be an int >= 0, got {num_test!r}.")
    image_archive, mask_archive = os.fspath(image_archive), os.fspath(mask_archive)
    root = os.path.abspath(os.fspath(out_dir))
    with _open_zip(image_archive, "COVID-19-CT-Seg_20cases.zip") as images_zip, _open_zip(
        mask_archive, "Infection_Mask.zip"
    ) as masks_zip:
        images, masks = _nifti_members(images_zip), _nifti_members(masks_zip)
        expected = ((images, image_archive, "COVID-19-CT-Seg_20cases"), (masks, mask_archive, "Infection_Mask"))
        for found, archive, name in expected:
            if not found:
                raise ValueError(f"download_covid_ct: {archive!r} holds no NIfTI files; is it {name}.zip?")
        missing = sorted(set(images) - set(masks), key=natural_sort_key)
        if missing:
            raise ValueError(f"download_covid_ct: {mask_archive!r} has no mask {missing[0]!r} for the image of that "
                             f"name in {image_archive!r} ({len(missing)} missing).")
        orphans = sorted(set(masks) - set(images), key=natural_sort_key)
        if orphans:
            raise ValueError(f"download_covid_ct: mask {orphans[0]!r} of {mask_archive!r} has no image in "
                             f"{image_archive!r} ({len(orphans)} without image).")
        names = sorted(images, key=natural_sort_key)
        if num_test > len(names):
            raise ValueError(f"convert_covid19_ct_seg: num_test={num_test} but the archives hold {len(names)} cases.")
        for name in names:
            shape, mask_shape = _member_shape(images_zip, images[name]), _member_shape(masks_zip, masks[name])
            if shape != mask_shape:
                raise ValueError(f"download_covid_ct: image {images[name]!r} has shape {shape} but mask "
                                 f"{masks[name]!r} of {mask_archive!r} has {mask_shape}.")
        tests = names[len(names) - num_test :]
        split_patients = {_patient(n) for n in tests} & {_patient(n) for n in names if n not in tests}
        if split_patients:
            logger.warning("patients %s have cases in Tr and Ts; choose another --num-test", sorted(split_patients))
        os.makedirs(root, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".extract") as tmp:
            for name in names:
                split = "Ts" if name in tests else "Tr"
                image_path = os.path.join(root, f"images{split}", name)
                _copy_member(images_zip, images[name], image_path)
                mask_path = masks_zip.extract(masks[name], tmp)
                source = _load(mask_path, f"mask {masks[name]!r} of {mask_archive!r}")
                what = f"mask {masks[name]!r} of {mask_archive!r}"
                label = _check_labels(np.asanyarray(source.dataobj), {0, 1}, what)
                image_zooms = nib.load(image_path).header.get_zooms()[:3]
                if not np.allclose(image_zooms, source.header.get_zooms()[:3], rtol=1e-3):
                    logger.warning("%s: image zooms %s differ from mask zooms %s", name, image_zooms,
                                   source.header.get_zooms()[:3])
                _save_nifti(os.path.join(root, f"labels{split}", name), label, source, source.affine, label=True)
                os.remove(mask_path)
                logger.info("%s -> %s %s, infection %.2f %%", name, split, label.shape, 100 * label.mean())
                del label, source
    write_dataset_json(
        root, "covid19_ct_seg", {"background": 0, "infection": 1},
        description=f"COVID-19-CT-Seg: 20 CT volumes (HU) with infection masks, 3D NIfTI; last {num_test} cases "
        "(natural order) as test",
        reference="Ma et al. (2021) Toward data-efficient learning: a benchmark for COVID-19 CT lung and infection "
        "segmentation, Med. Phys. 48(3):1197-1210, doi:10.1002/mp.14676; data doi:10.5281/zenodo.3757476",
        licence="as listed on Zenodo record 3757476; the cases come from coronacases.org and Radiopaedia, with their "
        "own terms",
        modality="CT",
    )
    return root


def _fill_defaults(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Dataset-specific defaults and option checks (argparse defaults cannot depend on ``--dataset``)."""
    medseg = args.dataset == "medseg"
    if medseg:
        for option in ("mask_url", "mask_sha256", "mask_archive", "num_test"):
            if getattr(args, option) is not None:
                parser.error(f"--{option.replace('_', '-')} applies to --dataset covid19_ct_seg only")
        args.url = args.url or MEDSEG_URL
        if args.archive is not None and os.path.isdir(args.archive) and args.sha256 is not None:
            parser.error("--sha256 checks a zip; with a folder as --archive the files are checked by --md5")
    else:
        if args.classes != "binary" or args.include_effusion or args.md5 is not None:
            parser.error("--classes multiclass, --include-effusion and --md5 apply to --dataset medseg only")
        args.url = args.url or COVID19_CT_SEG_URL
        args.sha256 = COVID19_CT_SEG_SHA256 if args.sha256 is None else args.sha256
        args.mask_url = args.mask_url or COVID19_CT_SEG_MASK_URL
        args.mask_sha256 = COVID19_CT_SEG_MASK_SHA256 if args.mask_sha256 is None else args.mask_sha256
        args.num_test = 4 if args.num_test is None else args.num_test


def main(argv: Sequence[str] | None = None) -> str:
    """Command-line entry point; returns the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    add_archive_arguments(parser, None, None)  # None: the dataset's URL / checksum, filled in after parsing
    parser.add_argument("--mask-url", default=None, help="covid19_ct_seg: URL of Infection_Mask.zip")
    parser.add_argument("--mask-sha256", default=None, help="covid19_ct_seg: SHA-256 of the mask zip; 'none' skips")
    parser.add_argument("--mask-archive", default=None, help="covid19_ct_seg: local Infection_Mask.zip")
    parser.add_argument("--num-test", type=int, default=None, help="covid19_ct_seg: last N cases -> Ts (default 4)")
    parser.add_argument("--classes", choices=("binary", "multiclass"), default="binary", help="medseg labels")
    parser.add_argument("--include-effusion", action="store_true", help="medseg binary: effusion counts as infection")
    parser.add_argument("--md5", choices=("none",), default=None, help="medseg: 'none' skips the per-file MD5 check")
    args = parser.parse_args(argv)
    _fill_defaults(args, parser)
    if args.dataset == "medseg":
        archive, remove_after = fetch_archive(args, "medseg_covid_dataset_1.zip", timeout=120)
        if args.archive is not None and os.path.isfile(archive) and str(args.sha256).lower() == "none":
            # no SHA-256 is published for figshare's generated zip: log it so a user can pin their copy
            logger.info("SHA-256 of %s: %s", archive, sha256sum(archive))
        md5 = None if args.md5 == "none" else MEDSEG_MD5
        root = convert_medseg(archive, args.out, args.classes, args.include_effusion, md5=md5)
        removes = [archive] if remove_after else []
    else:
        images, remove_images = fetch_archive(args, "COVID-19-CT-Seg_20cases.zip", timeout=300)
        mask_args = argparse.Namespace(
            url=args.mask_url, sha256=args.mask_sha256, archive=args.mask_archive, out=args.out,
            keep_archive=args.keep_archive,
        )
        masks, remove_masks = fetch_archive(mask_args, "Infection_Mask.zip", timeout=300)
        root = convert_covid19_ct_seg(images, masks, args.out, num_test=args.num_test)
        removes = [p for p, remove in ((images, remove_images), (masks, remove_masks)) if remove]
    for path in removes:
        os.remove(path)
    return root


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
