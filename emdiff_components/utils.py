"""Small helpers every room of the package uses: atomic file writes, natural name order, the voxel-size check.

This module imports nothing else of the package, so any room may import it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

__all__ = [
    "atomic_write",
    "natural_sort_key",
    "check_voxel_size",
    "is_positive_int",
    "check_positive_ints",
    "install_cause_last_hook",
    "root_cause",
]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    A run killed while writing never leaves half a file under the final name: the rename (``os.replace``) is atomic
    on one file system, which the temporary file in the same folder guarantees. The folder is created if needed.

    Args:
        path: the final file.
        keep_existing: start the temporary file as a copy of an existing ``path`` (writers that append, e.g. a new
            dataset in an HDF5 file); default False (the temporary path does not exist when yielded, so the writer
            creates it with the usual permissions).

    The temporary name starts with a dot and ends with all suffixes of ``path`` (``.x.nii.gz``), so writers that pick
    the format by extension see the right one.

    Example::

        with atomic_write("out/metrics.json") as tmp:
            tmp.write_text(json.dumps(metrics))
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes) or ".tmp"
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if keep_existing and final.exists():
            shutil.copy2(final, tmp)  # streamed (HDF5 files can be large), with the file's permissions
        else:
            tmp.unlink()  # some writers refuse to overwrite or append to an existing empty file
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def natural_sort_key(name: str) -> list:
    """Sort key that orders digits by value and letters case-insensitively: ``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(name))]


def check_voxel_size(voxel_size: Sequence[float] | float | None, owner: str) -> tuple[float, float, float]:
    """A voxel size as three positive finite floats ``(z, y, x)`` in nm; two values ``(z, xy)`` mean ``(z, xy, xy)``.

    Args:
        voxel_size: 3 numbers ``(z, y, x)`` or 2 numbers ``(z, xy)``.
        owner: the function or class named in the error.

    Raises:
        ValueError: anything else (naming ``owner`` and the value).
    """
    message = f"{owner}: voxel_size must be 3 positive numbers (z, y, x) or 2 (z, xy) in nm, got {voxel_size!r}."
    if isinstance(voxel_size, (str, bytes)):  # "29" would iterate as the characters "2", "9"
        raise ValueError(message)
    try:
        values = [float(v) for v in voxel_size]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if len(values) == 2:
        values = [values[0], values[1], values[1]]
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(message)
    return values[0], values[1], values[2]


def is_positive_int(value: object) -> bool:
    """True for an ``int`` >= 1 (``bool`` is not taken for an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_ints(owner: str, **values: object) -> None:
    """Raise ``ValueError`` naming ``owner`` and the argument for the first value that is not an int >= 1.

    Example::

        check_positive_ints("ChannelAttention", channels=channels, reduction=reduction)
    """
    for name, value in values.items():
        if not is_positive_int(value):
            raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}.")


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of ``error``'s chain (``__cause__``, else ``__context__``), ``error`` itself if none."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or error.__context__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def install_cause_last_hook() -> None:
    """Make the cause of an uncaught chained error the last line a user reads.

    A bad input found while MONAI parses a bundle config surfaces as MONAI's ``RuntimeError: Failed to evaluate
    ConfigExpression ...``, printed after a long traceback that hides the precise message (missing folder, shapes that
    differ) far above. This hook prints the usual traceback and then ``Error: <cause type>: <message>``. It is
    installed on ``import emdiff_components`` (the bundle configs import it) only when ``sys.excepthook`` is Python's
    own, so IPython and other tools keep theirs.
    """
    if sys.excepthook is not sys.__excepthook__:
        return

    def hook(kind, value, traceback) -> None:
        sys.__excepthook__(kind, value, traceback)
        cause = root_cause(value) if value is not None else None
        if cause is not None and cause is not value:
            print(f"\nError: {type(cause).__name__}: {cause}", file=sys.stderr)

    sys.excepthook = hook
