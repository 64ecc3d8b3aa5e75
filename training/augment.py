"""Augmentation presets, applied on batches in the tf.data pipeline (never inside the model)."""

from __future__ import annotations

import keras
from keras import layers

PRESETS = ("none", "seed", "anatomical", "anatomical_flip", "acquisition", "aspect")
# Width zoom range of the aspect preset: train pneumonia originals are ~23 % wider for their
# height than normals (median aspect 1.50 against 1.22), so squashing them to a square makes
# the aspect ratio a label cue unless it is randomised over at least that range.
ASPECT_WIDTH_ZOOM = (-0.25, 0.25)


def build_augmenter(preset: str, seed: int) -> keras.Sequential | None:
    """The augmentation named `preset`.

    seed: the seed projects' rotation 30 degrees, zoom 20 %, shifts 10 %, horizontal flip.
    anatomical: what a real radiograph varies by (small tilt, framing, exposure), no mirror image,
    because the heart sits on the left in every chest X-ray.
    acquisition: anatomical plus blur and sharpness changes, for other detectors and resampling.
    aspect: anatomical with width zoomed independently of height, so the original aspect ratio
    (lost in the square input, but visible as squashed anatomy) cannot stand in for the label.
    """
    if preset == "none":
        return None
    if preset == "seed":
        steps = [
            layers.RandomRotation(30 / 360, fill_mode="constant", seed=seed),
            layers.RandomZoom(0.2, fill_mode="constant", seed=seed + 1),
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed + 2),
            layers.RandomFlip("horizontal", seed=seed + 3),
        ]
    elif preset in ("anatomical", "anatomical_flip", "acquisition", "aspect"):
        width_zoom = ASPECT_WIDTH_ZOOM if preset == "aspect" else None
        steps = [
            layers.RandomRotation(7 / 360, fill_mode="constant", seed=seed),
            layers.RandomZoom(0.1, width_factor=width_zoom, fill_mode="constant", seed=seed + 1),
            layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed + 2),
            layers.RandomContrast(0.3, seed=seed + 4),
            layers.RandomBrightness(0.15, value_range=(0.0, 1.0), seed=seed + 5),
        ]
        if preset == "anatomical_flip":
            steps.append(layers.RandomFlip("horizontal", seed=seed + 3))
        if preset == "acquisition":
            steps += [
                layers.RandomGaussianBlur(0.5, kernel_size=5, sigma=(0.1, 1.5), value_range=(0.0, 1.0), seed=seed + 6),
                layers.RandomSharpness(0.3, value_range=(0.0, 1.0), seed=seed + 7),
            ]
    else:
        raise ValueError(f"unknown augmentation {preset!r}; choose one of {', '.join(PRESETS)}")
    return keras.Sequential(steps, name=f"augment_{preset}")
