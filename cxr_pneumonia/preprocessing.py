"""The one preprocessing path shared by training, prediction, the input gate and evaluation.

The canonical input (models from v3.0.0) removes differences of acquisition before the network: the exposed field
is cut out of flat borders (`exposed_field`), the field is equalised and its energy bands brought to the training
images' energies (`normalize_bands`, after Philipsen et al. 2015), then resized and equalised again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, median_filter

from cxr_pneumonia.config import (
    BAND_GAIN_LIMITS,
    BAND_PASSES,
    BAND_SIGMAS,
    BAND_WORKING_SIZE,
    FIELD_FLATNESS,
    FIELD_MAX_CROP,
    FIELD_MIN_CROP,
    FIELD_WORKING_SIZE,
)
from cxr_pneumonia.imaging import read_image_file

CONTRAST_PERCENTILES = (1.0, 99.0)
# How grey levels are normalised; a model's config.json names its own (models without the key used "percentile").
NORMALIZATIONS = {
    "percentile": "contrast stretched between the 1st and 99th percentiles to [0, 1]",
    "equalize": "global histogram equalisation to [0, 1] (each pixel becomes the share of pixels darker than it), "
                "so any monotonic change of contrast, gamma or window gives the same input",
    "canonical": "the exposed field cut out of flat borders (dark margins, collimator bands, padding; decided on "
                 f"a median-filtered copy of {FIELD_WORKING_SIZE} px), equalised at {BAND_WORKING_SIZE} px, split "
                 f"into difference-of-Gaussian bands (sigma {', '.join(map(str, BAND_SIGMAS))} px) and the "
                 "residual, each band scaled so that its standard deviation in the central field equals the "
                 "training images' mean (band_energies; gains clipped to "
                 f"{BAND_GAIN_LIMITS[0]:g}-{BAND_GAIN_LIMITS[1]:g}, {BAND_PASSES} passes), summed (Philipsen et al., "
                 "IEEE TMI 2015), resized to image_size and equalised again, so that framing, sharpening, blur, "
                 "noise and contrast of the acquisition are largely removed before the network",
}
DEFAULT_NORMALIZATION = "percentile"
CANONICAL = "canonical"


@dataclass(frozen=True)
class Normalization:
    """A normalisation and the facts it needs from config.json (the canonical input's band energies)."""

    name: str = DEFAULT_NORMALIZATION
    band_energies: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in NORMALIZATIONS:
            raise ValueError(f"unknown normalisation {self.name!r}; choose one of {', '.join(NORMALIZATIONS)}")
        if self.name == CANONICAL and len(self.band_energies) != len(BAND_SIGMAS) + 1:
            raise ValueError(f"the canonical input needs {len(BAND_SIGMAS) + 1} band energies, "
                             f"got {len(self.band_energies)}")


class Field(NamedTuple):
    """The part of an image the model reads, in its pixels: rows [top, bottom) and columns [left, right)."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The field of an image (and of any channels stacked after its two first axes)."""
        return image[self.top : self.bottom, self.left : self.right]


def as_normalization(normalization: str | Normalization) -> Normalization:
    """A normalisation given by name (percentile, equalize) or in full."""
    return normalization if isinstance(normalization, Normalization) else Normalization(normalization)


def describe(normalization: str) -> str:
    """The preprocessing in words, for config.json and the model card."""
    words = NORMALIZATIONS[normalization]
    if normalization == CANONICAL:
        return f"grayscale, {words}"
    return f"grayscale, squashed to a square of image_size (bilinear, antialiased), {words}"


def to_model_input(gray: np.ndarray, image_size: int,
                   normalization: str | Normalization = DEFAULT_NORMALIZATION) -> np.ndarray:
    """Turn a 2-D grayscale array into the (size, size, 1) float32 tensor the model takes."""
    return prepare_input(gray, image_size, normalization)[0]


def prepare_input(gray: np.ndarray, image_size: int,
                  normalization: str | Normalization = DEFAULT_NORMALIZATION) -> tuple[np.ndarray, Field]:
    """The model input of a 2-D grayscale array, and the field of the array it was made from."""
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    normalization = as_normalization(normalization)
    field = field_of(gray, normalization)
    if normalization.name == CANONICAL:
        work = equalize_histogram(resize(field.crop(gray), BAND_WORKING_SIZE, BAND_WORKING_SIZE))
        pixels = resize(normalize_bands(work, normalization.band_energies), image_size, image_size)
        normalized = equalize_histogram(pixels)
    else:
        pixels = resize(gray, image_size, image_size)
        normalized = equalize_histogram(pixels) if normalization.name == "equalize" else stretch_contrast(pixels)
    return normalized[..., np.newaxis].astype(np.float32), field


def field_of(gray: np.ndarray, normalization: str | Normalization) -> Field:
    """The field the model reads: the exposed field for the canonical input, the whole image otherwise."""
    if as_normalization(normalization).name == CANONICAL:
        return exposed_field(gray)
    return Field(0, gray.shape[0], 0, gray.shape[1])


def resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a 2-D float array (antialiased when shrinking)."""
    image = Image.fromarray(pixels.astype(np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def exposed_field(gray: np.ndarray) -> Field:
    """The image without its flat borders: uniform lines (dark margins, white collimator bands, padding) running
    in from any edge.

    Decided on a median-filtered copy of FIELD_WORKING_SIZE px, so that texture (noise, JPEG blocks) cannot move
    it. A line is flat when its 10-90 % spread, and its median's distance from the outermost line's, are under
    FIELD_FLATNESS of the central field's spread, in grey levels brought to a central median of 1/2 (so that
    gamma cannot move it) or in their ranks (see _flat_run). At most FIELD_MAX_CROP of a side goes, so it never
    eats the chest.
    """
    height, width = gray.shape
    small = median_filter(resize(gray, FIELD_WORKING_SIZE, FIELD_WORKING_SIZE), size=3, mode="nearest")
    quarter = FIELD_WORKING_SIZE // 4
    views = (_with_median_half(small, small[quarter:-quarter, quarter:-quarter]), equalize_histogram(small))
    tolerances = [FIELD_FLATNESS * max(float(np.subtract(*np.percentile(view[quarter:-quarter, quarter:-quarter],
                                                                         (95, 5)))), 1e-3) for view in views]
    limit = int(FIELD_MAX_CROP * FIELD_WORKING_SIZE)
    side = FIELD_WORKING_SIZE
    top, bottom, left, right = 0, side, 0, side
    for _ in range(2):  # each side measured again inside the other axis's field
        rows = [view[:, left:right] for view in views]
        columns = [view[top:bottom, :].T for view in views]
        top = _flat_run(rows, tolerances, limit)
        bottom = side - _flat_run([lines[::-1] for lines in rows], tolerances, limit)
        left = _flat_run(columns, tolerances, limit)
        right = side - _flat_run([lines[::-1] for lines in columns], tolerances, limit)
    return Field(round(top * height / side), round(bottom * height / side),
                 round(left * width / side), round(right * width / side))


def _with_median_half(pixels: np.ndarray, central: np.ndarray) -> np.ndarray:
    """The pixels under the power that takes the central field's median to 1/2: a gamma change of the image then
    gives the same values."""
    median = float(np.clip(np.median(central), 0.01, 0.99))
    return np.clip(pixels, 0.0, 1.0) ** (np.log(0.5) / np.log(median))


def _flat_run(views: list[np.ndarray], tolerances: list[float], limit: int) -> int:
    """How many lines (rows, the first at the edge) are flat and at the edge's level, counted from the edge: in
    ranks, or in grey levels when that run is at least FIELD_MIN_CROP (a noisy margin's ranks are not flat, and a
    line more or less of a narrow margin is what a change of gamma moved)."""
    runs = []
    for lines, tolerance in zip(views, tolerances, strict=True):
        p10, median, p90 = np.percentile(lines[:limit], (10, 50, 90), axis=1)
        flat = (p90 - p10 < tolerance) & (np.abs(median - median[0]) < tolerance)
        runs.append(limit if flat.all() else int(np.argmin(flat)))
    grey_run, rank_run = runs
    run = max(rank_run, grey_run if grey_run >= FIELD_MIN_CROP * FIELD_WORKING_SIZE else 0)
    return _halfway_line(views[0], run) if 0 < run < limit else run


def _halfway_line(lines: np.ndarray, run: int, reach: int = 2) -> int:
    """The line near the end of a border run where the lines' mean grey level is halfway between the border's and
    the field's: a blur spreads an edge both ways but leaves its halfway point."""
    means = lines.mean(axis=1)
    border, field = np.median(means[: max(run - reach, 1)]), means[min(run + reach, len(means) - 1)]
    window = means[max(run - reach, 1) : run + reach + 1]
    crossed = np.abs(window - border) >= np.abs(field - border) / 2
    return max(run - reach, 1) + int(np.argmax(crossed)) if crossed.any() else run


def band_split(image: np.ndarray) -> list[np.ndarray]:
    """Difference-of-Gaussian bands (finest first, sigma BAND_SIGMAS px) and the coarse residual; they sum back to
    the image exactly."""
    bands, finer, blurred_by = [], image.astype(np.float32), 0.0
    for sigma in BAND_SIGMAS:
        coarser = gaussian_filter(finer, np.sqrt(sigma**2 - blurred_by**2), mode="reflect")  # blurs compose
        bands.append(finer - coarser)
        finer, blurred_by = coarser, sigma
    return [*bands, finer]


def central_field(image: np.ndarray) -> np.ndarray:
    """The middle three quarters of each side, where the lungs lie, away from any border the crop left."""
    height, width = image.shape
    return image[height // 8 : height - height // 8, width // 8 : width - width // 8]


def band_energies(image: np.ndarray) -> np.ndarray:
    """Each band's standard deviation in the central field, for an image equalised at BAND_WORKING_SIZE."""
    return energies_of(band_split(image))


def energies_of(bands: list[np.ndarray]) -> np.ndarray:
    """The standard deviation of each band in the central field."""
    return np.array([central_field(band).std() for band in bands])


def normalize_bands(image: np.ndarray, reference: tuple[float, ...]) -> np.ndarray:
    """Energy-band normalisation (Philipsen, Maduskar, Hogeweg, Melendez, Sanchez and van Ginneken, "Localized
    energy-based normalization of medical images: application to chest radiography", IEEE TMI 34(9), 2015), in its
    global form: each band scaled so that its energy in the central field is the reference energy. Difference-of-
    Gaussian bands overlap, so a band's gain leaks into its neighbours: as in the paper, the split and scaling are
    repeated (BAND_PASSES times), each pass on the last one's result."""
    normalized = image.astype(np.float32)
    for _ in range(BAND_PASSES):
        bands = band_split(normalized)
        gains = np.clip(np.asarray(reference) / np.maximum(energies_of(bands), 1e-9), *BAND_GAIN_LIMITS)
        normalized = sum(gain * band for gain, band in zip(gains, bands, strict=True)).astype(np.float32)
    return normalized


def reference_energies(images: list[np.ndarray]) -> tuple[float, ...]:
    """The mean band energies of decoded training images, each cropped and equalised as the canonical input is."""
    energies = [band_energies(equalize_histogram(resize(exposed_field(gray).crop(gray), BAND_WORKING_SIZE,
                                                        BAND_WORKING_SIZE))) for gray in images]
    return tuple(float(value) for value in np.mean(energies, axis=0))


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


def load_model_input(path: str | Path, image_size: int,
                     normalization: str | Normalization = DEFAULT_NORMALIZATION) -> np.ndarray:
    """Read an image file and preprocess it exactly as training did."""
    return to_model_input(read_image_file(path), image_size, normalization)
