"""Data access: image readers/writers, the MSD / nnU-Net dataset layout as 2D-slice datalists, and demo data."""

from __future__ import annotations

from .demo import make_demo_dataset
from .layout import (
    DatasetError,
    download_file,
    segmentation_datalist,
    sha256sum,
    single_file_datalist,
    write_dataset_json,
    write_layout,
)
from .readers import ImageReadError, read_image, read_voxel_size, supported_extensions, write_image
from .splits import holdout_split

__all__ = [
    "make_demo_dataset",
    "DatasetError",
    "download_file",
    "segmentation_datalist",
    "sha256sum",
    "single_file_datalist",
    "write_dataset_json",
    "write_layout",
    "ImageReadError",
    "read_image",
    "read_voxel_size",
    "supported_extensions",
    "write_image",
    "holdout_split",
]
