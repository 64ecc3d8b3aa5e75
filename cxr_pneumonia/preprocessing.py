"""The one preprocessing path shared by training and prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cxr_pneumonia.imaging import read_image_file

CONTRAST_PERCENTILES = (1.0, 99.0)
PREPROCESSING_DESCRIPTION = (
    "grayscale, squashed to a square of image_size (bilinear, antialiased), "
    "contrast stretched between the 1st and 99th percentiles to [0, 1]"
)


def to_model_input(gray: np.ndarray, image_size: int) -> np.ndarray:
    """Turn a 2-D grayscale array into the (size, size, 1) float32 tensor the model takes."""
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    resized = Image.fromarray(gray.astype(np.float32), mode="F").resize(
        (image_size, image_size), Image.Resampling.BILINEAR
    )
    pixels = np.asarray(resized, dtype=np.float32)
    low, high = np.percentile(pixels, CONTRAST_PERCENTILES)
    stretched = (pixels - low) / max(float(high - low), 1e-6)
    return np.clip(stretched, 0.0, 1.0)[..., np.newaxis].astype(np.float32)


def load_model_input(path: str | Path, image_size: int) -> np.ndarray:
    """Read an image file and preprocess it exactly as training did."""
    return to_model_input(read_image_file(path), image_size)
