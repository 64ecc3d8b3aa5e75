"""Augmentation presets, applied on batches in the tf.data pipeline (never inside the model)."""

from __future__ import annotations

import keras
from keras import layers

from cxr_pneumonia.acquisition import HELD_OUT_CHANGES, TRAINING_CHANGES, TRAINING_MAX_SEVERITY

PRESETS = ("none", "seed", "anatomical", "anatomical_flip", "acquisition", "framing", "sites")
# Presets that change each decoded image's acquisition at its own size, before resizing and equalisation.
RAW_ACQUISITION_PRESETS = ("sites",)
# Zoom ranges of the framing preset (negative zooms in, that is crops). Train pneumonia images are
# mostly tight crops of the lungs and train normals show shoulders and abdomen, so a model learns the
# framing: on the validation split, cropping 7.5 % off the top and bottom of normals made the
# acquisition-augmented model call 40 % of them pneumonia. Cropping every class breaks the cue.
FRAMING_HEIGHT_ZOOM = (-0.35, 0.1)
FRAMING_WIDTH_ZOOM = (-0.2, 0.1)
PRESET_DESCRIPTIONS = {
    "none": "no augmentation",
    "seed": "the seed projects' rotation 30 degrees, zoom 20 %, shifts 10 %, horizontal flip",
    "anatomical": "rotation 7 degrees, zoom 10 %, shifts 6 %, contrast and brightness, no flip "
                  "(the heart sits on the left)",
    "anatomical_flip": "anatomical plus horizontal flip",
    "acquisition": "anatomical plus blur and sharpness changes",
    "framing": "anatomical with height and width zoomed independently, up to crops of 35 % of the height "
               "and 20 % of the width, so that the framing of the radiograph stops being a label cue",
    "sites": "framing, after a change of acquisition made to the decoded image before resizing and equalisation: "
             "with probability 0.75, one or two of " + ", ".join(TRAINING_CHANGES).replace("_", " ")
             + f" at severities up to {TRAINING_MAX_SEVERITY:g} of 3 (cxr_pneumonia.acquisition); "
             + ", ".join(HELD_OUT_CHANGES).replace("_", " ") + " and severity 3 are kept out, for the robustness "
             "suite to measure what training never showed",
}


def build_augmenter(preset: str, seed: int) -> keras.Sequential | None:
    """The augmentation named `preset`: its geometric steps, then its photometric ones (see build_augmenters)."""
    geometric, photometric = build_augmenters(preset, seed)
    steps = [*(geometric.layers if geometric else []), *(photometric.layers if photometric else [])]
    return keras.Sequential(steps, name=f"augment_{preset}") if steps else None


def build_augmenters(preset: str, seed: int) -> tuple[keras.Sequential | None, keras.Sequential | None]:
    """The augmentation named `preset`, as its geometric part (which moves pixels, so it must move a box mask
    stacked on the image alike) and its photometric part (grey levels only).

    seed: the seed projects' rotation 30 degrees, zoom 20 %, shifts 10 %, horizontal flip.
    anatomical: what a real radiograph varies by (small tilt, framing, exposure), no mirror image,
    because the heart sits on the left in every chest X-ray.
    acquisition: anatomical plus blur and sharpness changes, for other detectors and resampling.
    framing: anatomical with height and width zoomed independently, up to tight crops of the lungs,
    so how the radiograph was framed cannot stand in for the label.
    """
    if preset == "none":
        return None, None
    if preset == "seed":
        return keras.Sequential([
            layers.RandomRotation(30 / 360, fill_mode="constant", seed=seed),
            layers.RandomZoom(0.2, fill_mode="constant", seed=seed + 1),
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed + 2),
            layers.RandomFlip("horizontal", seed=seed + 3),
        ], name="geometric_seed"), None
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation {preset!r}; choose one of {', '.join(PRESETS)}")
    if preset in ("framing", "sites"):
        zoom = layers.RandomZoom(FRAMING_HEIGHT_ZOOM, FRAMING_WIDTH_ZOOM, fill_mode="constant", seed=seed + 1)
    else:
        zoom = layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 1)
    geometric = [
        layers.RandomRotation(7 / 360, fill_mode="constant", seed=seed),
        zoom,
        layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed + 2),
    ]
    if preset == "anatomical_flip":
        geometric.append(layers.RandomFlip("horizontal", seed=seed + 3))
    photometric = [
        layers.RandomContrast(0.3, seed=seed + 4),
        layers.RandomBrightness(0.15, value_range=(0.0, 1.0), seed=seed + 5),
    ]
    if preset == "acquisition":
        photometric += [
            layers.RandomGaussianBlur(0.5, kernel_size=5, sigma=(0.1, 1.5), value_range=(0.0, 1.0), seed=seed + 6),
            layers.RandomSharpness(0.3, value_range=(0.0, 1.0), seed=seed + 7),
        ]
    return (keras.Sequential(geometric, name=f"geometric_{preset}"),
            keras.Sequential(photometric, name=f"photometric_{preset}"))
