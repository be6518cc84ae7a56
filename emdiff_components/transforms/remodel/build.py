"""The mitochondria library of a remodeling run: loaded from a file, or built from a data list's masks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from emdiff_components.data.readers import read_image

from .library import MitochondriaLibrary

__all__ = ["mitochondria_library"]


def mitochondria_library(
    datalist: Sequence[Mapping[str, object]], path: str | os.PathLike | None = None, key: str = "mito"
) -> MitochondriaLibrary:
    """The shapes :class:`RandPlaceMitochondria` places: from ``path`` when given, else from the data list's masks.

    NeuroDiff's remodeling places mitochondria taken from real masks. A data set without mitochondria masks (e.g.
    FIB-SEM neurons) borrows a library saved from another one (``path``); otherwise the library is built with
    :meth:`MitochondriaLibrary.from_volumes` (default filters) from the ``key`` file of every entry that has one.

    Args:
        datalist: entries (dicts) as given by ``volume_datalist``; entries without ``key`` are skipped.
        path: ``.npz`` written by :meth:`MitochondriaLibrary.save`, or None / "" (default) to build from the masks.
        key: the entry key of the mitochondria mask file; default ``"mito"``.

    Returns:
        The library; empty (with a logged warning) when no entry has a mask and no path is given.
    """
    if path:
        return MitochondriaLibrary.load(path)
    return MitochondriaLibrary.from_volumes([read_image(entry[key]) for entry in datalist if key in entry])
