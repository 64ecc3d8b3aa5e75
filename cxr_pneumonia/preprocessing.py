"""The one preprocessing path shared by training and prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cxr_pneumonia.imaging import read_image_file

CONTRAST_PERCENTILES = (1.0, 99.0)
# How grey levels are normalised; a model's config.json names its own (models without the key used "percentile").
NORMALIZATIONS = {
    "percentile": "contrast stretched between the 1st and 99th percentiles to [0, 1]",
    "equalize": "global histogram equalisation to [0, 1] (each pixel becomes the share of pixels darker than it), "
                "so any monotonic change of contrast, gamma or window gives the same input",
}
DEFAULT_NORMALIZATION = "percentile"


def describe(normalization: str) -> str:
    """The preprocessing in words, for config.json and the model card."""
    return f"grayscale, squashed to a square of image_size (bilinear, antialiased), {NORMALIZATIONS[normalization]}"


def to_model_input(gray: np.ndarray, image_size: int, normalization: str = DEFAULT_NORMALIZATION) -> np.ndarray:
    """Turn a 2-D grayscale array into the (size, size, 1) float32 tensor the model takes."""
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")
    resized = Image.fromarray(gray.astype(np.float32), mode="F").resize(
        (image_size, image_size), Image.Resampling.BILINEAR
    )
    pixels = np.asarray(resized, dtype=np.float32)
    normalized = equalize_histogram(pixels) if normalization == "equalize" else stretch_contrast(pixels)
    return normalized[..., np.newaxis].astype(np.float32)


def stretch_contrast(pixels: np.ndarray) -> np.ndarray:
    """Linear stretch of the 1st-99th percentile range to [0, 1], clipped."""
    low, high = np.percentile(pixels, CONTRAST_PERCENTILES)
    return np.clip((pixels - low) / max(float(high - low), 1e-6), 0.0, 1.0)


def equalize_histogram(pixels: np.ndarray) -> np.ndarray:
    """Global histogram equalisation: each value's empirical CDF, the darkest value mapped to 0 (as OpenCV's
    equalizeHist does). A flat image maps to zeros."""
    flat = pixels.ravel()
    order = np.argsort(flat)
    ordered = flat[order]
    below_or_equal = np.empty(flat.size, dtype=np.intp)
    # Sorted queries into the sorted values: ~3x faster than looking up the pixels in image order.
    below_or_equal[order] = np.searchsorted(ordered, ordered, side="right")
    darkest = below_or_equal[order[0]]
    span = flat.size - darkest
    if span == 0:
        return np.zeros_like(pixels)
    return ((below_or_equal - darkest) / span).reshape(pixels.shape).astype(np.float32)


def load_model_input(path: str | Path, image_size: int, normalization: str = DEFAULT_NORMALIZATION) -> np.ndarray:
    """Read an image file and preprocess it exactly as training did."""
    return to_model_input(read_image_file(path), image_size, normalization)
