"""Data access: image readers/writers, the MSD / nnU-Net dataset layout as 2D-slice datalists, and demo data."""

from __future__ import annotations

from .arrays import LazyVolume, create_volume, open_volume
from .demo import make_demo_dataset, make_demo_volumes
from .download import add_archive_arguments, download_file, fetch_archive, sha256sum
from .itk_io import is_dicom_series
from .layout import (
    CHANNEL_SUFFIX,
    DatasetError,
    labelled_datalist,
    list_images,
    match_cases,
    segmentation_datalist,
    single_file_datalist,
    strip_extension,
    write_dataset_json,
    write_layout,
)
from .mixing import labelled_sections, mixing_weights, neuron_training_datalist
from .readers import ImageReadError, output_extension, read_image, read_voxel_size, supported_extensions, write_image
from .splits import holdout_split
from .volumes import (
    condition_datalist,
    image_volume_datalist,
    label_slices_2d,
    volume_datalist,
    write_volume_case,
    write_volume_dataset_json,
)

__all__ = [
    "CHANNEL_SUFFIX",
    "DatasetError",
    "ImageReadError",
    "LazyVolume",
    "add_archive_arguments",
    "condition_datalist",
    "create_volume",
    "download_file",
    "fetch_archive",
    "holdout_split",
    "image_volume_datalist",
    "is_dicom_series",
    "label_slices_2d",
    "labelled_datalist",
    "labelled_sections",
    "list_images",
    "make_demo_dataset",
    "make_demo_volumes",
    "match_cases",
    "mixing_weights",
    "neuron_training_datalist",
    "open_volume",
    "output_extension",
    "read_image",
    "read_voxel_size",
    "segmentation_datalist",
    "sha256sum",
    "single_file_datalist",
    "strip_extension",
    "supported_extensions",
    "volume_datalist",
    "write_dataset_json",
    "write_image",
    "write_layout",
    "write_volume_case",
    "write_volume_dataset_json",
]

from .ctc import ctc_datalist, extract_single_cells, write_ctc_sequence, write_single_cells

__all__ += ["ctc_datalist", "extract_single_cells", "write_ctc_sequence", "write_single_cells"]
from .demo_cells import make_demo_cells

__all__ += ["make_demo_cells"]
