"""Writing small DICOM files with pydicom, for the tests and the gate benchmark."""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid


def dicom_dataset(
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    **tags: object,
) -> Dataset:
    """A secondary-capture CR dataset holding `pixels`, with extra tags set by keyword."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.Modality = "CR"
    dataset.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    for keyword, value in tags.items():
        setattr(dataset, keyword, value)
    return dataset


def dicom_bytes(dataset: Dataset) -> bytes:
    """The dataset as a DICOM file (preamble and DICM magic)."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dicom(
    pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int | None = None, **tags: object
) -> bytes:
    """A DICOM file of `pixels`."""
    return dicom_bytes(dicom_dataset(pixels, photometric, bits, **tags))
