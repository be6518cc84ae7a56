"""Downloads of public datasets: checksummed, atomic, with progress; shared by the ``scripts/download_*.py`` tools."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import urllib.request

from ..utils import atomic_write

__all__ = ["sha256sum", "download_file", "add_archive_arguments", "fetch_archive"]

logger = logging.getLogger(__name__)


def sha256sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: str | os.PathLike, sha256: str | None = None, timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` with logged progress, then check its SHA-256.

    The download goes to a hidden temporary file beside ``dest`` (:func:`~emdiff_components.utils.atomic_write`) and is
    renamed only after the checksum matched, so a killed or corrupt download never looks complete. An existing
    ``dest`` with the right checksum is reused.

    Args:
        url: http(s) address.
        dest: destination file.
        sha256: expected hex digest; None computes and logs it (verify later with the logged value).
        timeout: socket timeout in seconds, default 60.

    Returns:
        ``dest`` as a string.

    Raises:
        ValueError: checksum mismatch (the message gives both digests).
        OSError / urllib.error.URLError: the download failed.
    """
    dest = os.fspath(dest)
    if os.path.isfile(dest) and sha256 is not None and sha256sum(dest) == sha256.lower():
        logger.info("using existing %s (checksum ok)", dest)
        return dest
    logger.info("downloading %s -> %s", url, dest)
    with atomic_write(dest) as part:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as handle:  # noqa: S310
            total = int(response.headers.get("Content-Length") or 0)
            done, next_report = 0, 0.0
            for chunk in iter(lambda: response.read(1 << 20), b""):
                handle.write(chunk)
                done += len(chunk)
                fraction = done / total if total else 0.0
                if total and fraction >= next_report:
                    logger.info("  %5.1f %% of %.1f MB", 100 * fraction, total / 1e6)
                    next_report += 0.05
                elif not total and done % (100 << 20) < len(chunk):
                    logger.info("  %.0f MB", done / 1e6)
        digest = sha256sum(part)
        logger.info("SHA-256 of %s: %s", dest, digest)
        if sha256 is not None and digest != sha256.lower():  # raising inside atomic_write removes the download
            raise ValueError(f"download_file: SHA-256 of {url} is {digest}, expected {sha256.lower()}; file removed.")
    return dest


def add_archive_arguments(parser: argparse.ArgumentParser, url: str, sha256: str | None) -> None:
    """The command-line options every dataset downloader takes: ``--out --url --sha256 --archive --keep-archive``."""
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument("--url", default=url)
    parser.add_argument("--sha256", default=sha256, help="expected SHA-256 of the archive; 'none' to only compute it")
    parser.add_argument("--archive", default=None, help="use this local archive instead of downloading")
    parser.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive in --out")


def fetch_archive(args: argparse.Namespace, filename: str, timeout: float = 60.0) -> tuple[str, bool]:
    """Download (or take ``--archive``) and verify the archive named by :func:`add_archive_arguments` options.

    Returns:
        ``(path, remove_after)``: the archive and whether the caller should delete it once converted.
    """
    sha256 = None if str(args.sha256).lower() == "none" else args.sha256
    if args.archive is None:
        path = download_file(args.url, os.path.join(args.out, filename), sha256=sha256, timeout=timeout)
        return path, not args.keep_archive
    if sha256 is not None and sha256sum(args.archive) != sha256.lower():
        raise ValueError(f"fetch_archive: SHA-256 of {args.archive!r} is not {sha256}; pass --sha256 none to skip.")
    return args.archive, False
