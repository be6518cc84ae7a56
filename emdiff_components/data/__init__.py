"""Data access: image readers/writers, the MSD / nnU-Net dataset layout as 2D-slice datalists, and demo data."""

from __future__ import annotations

from .demo import make_demo_dataset, make_demo_volumes
from .download import add_archive_arguments, download_file, fetch_archive, sha256sum
from .layout import (
    DatasetError,
    segmentation_datalist,
    single_file_datalist,
    write_dataset_json,
    write_layout,
)
from .readers import ImageReadError, read_image, read_voxel_size, supported_extensions, write_image
from .splits import holdout_split
from .conditions import condition_datalist, remodel_volumes
from .volumes import label_slices_2d, volume_datalist, write_volume_case, write_volume_dataset_json

__all__ = [
    "make_demo_dataset",
    "make_demo_volumes",
    "DatasetError",
    "add_archive_arguments",
    "download_file",
    "fetch_archive",
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
    "volume_datalist",
    "write_volume_case",
    "write_volume_dataset_json",
    "label_slices_2d",
    "remodel_volumes",
    "condition_datalist",
]
