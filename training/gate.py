"""Fit the input gate of a model directory: write gate.npz, gate_classifier.keras and the "gate" block of its
config.json, with the share of each category of other radiographs it refuses.

    python -m training.gate --model model --data ../shared/data/chest_xray ../shared/data/rsna_pneumonia

Positives are at most 2000 training images of the model's sources (equal shares per source; --data defaults
to the sources in the run's run.json), outside the run's validation split, each as it is and once with a random
acquisition change (tilt, bars, a wider or tighter field, exposure, edge enhancement; see AUGMENTATION), so
that a chest X-ray framed or processed the way another site does it is not refused for that alone, all
preprocessed with the model's own normalisation. The one-class models (feature Gaussian, thumbnail PCA) are
fitted on them alone. The classifier, a small CNN, learns to tell them from negatives (see NEGATIVES): the
radiographs of --negatives (one folder per category, default ../shared/data/other_radiographs), chest X-rays
turned or cut down, and synthetic pictures that are not X-rays.

The verdict (see EVIDENCE_RULE): each score's excess over its usual range on the patient-grouped validation
chest X-rays (as they are and with one change each), summed; the limit of the sum refuses at most 1 % of them.
No image that is not a chest X-ray sets the rule.

Leave one category out: the classifier is trained again without each category of --negatives in turn, the
rule chosen again, and that category's images measured; the share refused then is the estimate for kinds
of radiograph the gate never saw. Both numbers per category go into the "gate" block and the model card.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter

from cxr_pneumonia.acquisition import CHANGES, apply_change
from cxr_pneumonia.config import CONFIG_FILENAME, DATA_ROOT, DEFAULT_DATA_DIR, MODEL_FILENAME
from cxr_pneumonia.gate import (
    CLASSIFIER_FILENAME,
    CLASSIFIER_SCORE,
    FEATURE_GRID,
    FRONTAL_CHEST,
    GATE_FILENAME,
    GATE_METHOD,
    ONE_CLASS_METHOD,
    ONE_CLASS_SCORES,
    THUMBNAIL_SIZE,
    GateStatistics,
    InputGate,
    VerdictRule,
    default_feature_layers,
    gate_function,
    thumbnails,
)
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.model import ModelConfig, inference_graph
from cxr_pneumonia.preprocessing import to_model_input
from training.data import (
    IMAGE_SUFFIXES,
    LabelledImages,
    concatenate,
    development_images,
    source_of,
    subset,
    validation_images,
)
from training.run_files import read_run

DEFAULT_NEGATIVES_DIR = DATA_ROOT / "other_radiographs"
MAX_FIT_IMAGES = 2000
MAX_VALIDATION_REFUSED = 0.01
PCA_VARIANCE = 0.95
# Features whose spread is below this share of the median spread are standardised by that floor instead,
# so that a unit (almost) silent in training cannot dominate the distance.
FEATURE_SCALE_FLOOR = 0.05
# The classifier's classes: the frontal chest X-ray it passes, then what it refuses.
CLASSES = (FRONTAL_CHEST, "lateral_chest", "other_body_part", "turned_chest", "part_of_chest", "not_xray")
# Folders of --negatives that hold another class than other_body_part.
CATEGORY_CLASSES = {"chest_lateral": "lateral_chest"}
NEGATIVE_COPIES = 4  # changed copies of each negative radiograph, beside the image as it is
MAX_SYNTHETIC_PER_CLASS = 600  # turned, cut-down and not-X-ray examples (never more than the positives)
CLASSIFIER_SIZE = 64
CLASSIFIER_FILTERS = (16, 32, 64, 64)
CLASSIFIER_BATCH = 64
CLASSIFIER_EPOCHS = 12  # an epoch draws as many chest X-rays as there are positives, and as many negatives
KIND_EPOCHS = 4  # of the kind head, on negatives alone, the trunk frozen
CLASSIFIER_LEARNING_RATE = 1e-3
CLASSIFIER_OUTPUTS = ("column 0: log-odds that the input is not a frontal chest X-ray; the other columns: logits of "
                      "what a refused image looks like, over the classes after frontal_chest")
# A score's base is this quantile of it on validation chest X-rays; above the base its tail is taken as
# exponential (the peaks-over-threshold view), with the mean excess as scale.
BASE_QUANTILE = 0.9
EVIDENCE_RULE = (
    "each score's base is its {base:.0%} quantile on the patient-grouped validation chest X-rays (as they are and "
    "with one acquisition change each) and its scale the mean excess of those above the base (an exponential "
    "tail: one scale further out is e times rarer); an image's evidence is the sum over the scores of its excess "
    "over the base in scales (nothing below the base), and it is refused when the evidence exceeds the limit, "
    "the evidence's {level:.0%} quantile on the same images, so that at most {max_refused:.0%} of them are refused"
)
# The gate must pass a chest X-ray from another site: its positives see every change of acquisition, a little
# beyond the severity the suite's bar is set at.
GATE_MAX_SEVERITY = 2.5
AUGMENTATION = (
    "each image as it is and once with one random change: black or white bars of 2-20 % of the width or height "
    "on two opposite sides (one time in eight), else one change of acquisition (cxr_pneumonia.acquisition: "
    + ", ".join(CHANGES).replace("_", " ") + f") at a severity up to {GATE_MAX_SEVERITY:g} of 3"
)
NEGATIVES = (
    "the radiographs of each category folder of the negatives (chest_lateral as lateral_chest, the others as "
    "other_body_part), each as it is and in 4 copies, 3 with a random acquisition change and one cropped to "
    "30-70 % of each side, each copy mirrored at random; training chest X-rays turned by 90, 180 or 270 degrees "
    "(turned_chest); close-ups of 15-35 % of each side and single halves stretched to the full width "
    "(part_of_chest); synthetic pictures (dead-leaves discs, smooth noise, gratings, text, shapes: not_xray). "
    "The frontal-or-not head learns first, from batches of half chest X-rays, half negatives, mirrored and "
    "shifted up to 5 % at random; then the kind head alone, on negatives spread evenly over their classes"
)


def image_key(path: str | Path) -> tuple[str, str, str]:
    """Source, class folder and file name: the same image whatever the data folder's path."""
    path = Path(path)
    return source_of(path), path.parent.name, path.name


def fit_images(data_dirs: list[Path], validation: LabelledImages, max_images: int, seed: int) -> LabelledImages:
    """At most `max_images` development images outside the validation split, in equal shares per source."""
    held_out = {image_key(path) for path in validation.paths}
    per_source = max_images // len(data_dirs)
    chosen = []
    for data_dir in data_dirs:
        images = development_images(data_dir)
        candidates = np.flatnonzero([image_key(path) not in held_out for path in images.paths])
        picked = np.sort(np.random.default_rng(seed).permutation(candidates)[:per_source])
        chosen.append(subset(images, np.isin(np.arange(len(images)), picked)))
    fitted = concatenate(chosen)
    if len(fitted) < 2:
        raise ValueError(f"only {len(fitted)} training images outside validation: too few to fit a gate")
    return fitted


def check_sources(model_dir: Path, data_dirs: list[Path]) -> None:
    """Raise ValueError if the run was trained on a source that is not among `data_dirs`."""
    trained_on = read_run(model_dir).get("sources", [])
    missing = {Path(source).name for source in trained_on} - {Path(folder).resolve().name for folder in data_dirs}
    if missing:
        raise ValueError(f"the model was trained on {', '.join(sorted(missing))} too: pass every source with --data")


def run_sources(model_dir: Path) -> list[Path]:
    """The data sources the run in `model_dir` was trained on (its run.json), or the default data set."""
    sources = read_run(model_dir).get("sources")
    return [Path(source) for source in sources] if sources else [DEFAULT_DATA_DIR]


def ledoit_wolf(centred: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrinkage of the covariance of centred rows towards a scaled identity, and the shrinkage."""
    n, p = centred.shape
    sample = centred.T @ centred / n
    mu = np.trace(sample) / p
    squared = centred**2
    beta = (np.sum(squared.T @ squared) / n - np.sum(sample**2)) / n
    delta = np.sum((sample - mu * np.eye(p)) ** 2)
    shrinkage = float(min(beta, delta) / delta) if delta > 0 else 1.0
    return (1.0 - shrinkage) * sample + shrinkage * mu * np.eye(p), shrinkage


def fit_feature_gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, precision matrix and shrinkage of a Gaussian on standardised features."""
    features = np.asarray(features, dtype=np.float64)
    mean = features.mean(axis=0)
    spread = features.std(axis=0)
    scale = np.maximum(spread, FEATURE_SCALE_FLOOR * np.median(spread) + 1e-12)
    covariance, shrinkage = ledoit_wolf((features - mean) / scale)
    return mean, np.linalg.inv(covariance) / np.outer(scale, scale), shrinkage


def fit_thumbnail_pca(flat: np.ndarray, variance: float = PCA_VARIANCE) -> tuple[np.ndarray, np.ndarray]:
    """Mean thumbnail and the fewest principal components that explain `variance` of the thumbnails."""
    flat = np.asarray(flat, dtype=np.float64)
    mean = flat.mean(axis=0)
    _, singular, components = np.linalg.svd(flat - mean, full_matrices=False)
    explained = np.cumsum(singular**2) / max(float(np.sum(singular**2)), 1e-12)
    count = min(int(np.searchsorted(explained, variance)) + 1, len(flat) - 1)
    return mean, components[:count]


def choose_rule(scores: dict[str, np.ndarray], max_refused: float) -> VerdictRule:
    """The verdict rule fitted on chest X-rays' scores (see EVIDENCE_RULE): refuses at most `max_refused` of them."""
    bases = {name: float(np.quantile(values, BASE_QUANTILE)) for name, values in scores.items()}
    excess = {name: values[values > bases[name]] - bases[name] for name, values in scores.items()}
    scales = {name: max(float(np.mean(values)) if values.size else 1.0, 1e-12) for name, values in excess.items()}
    unlimited = VerdictRule(bases, scales, 0.0)
    evidence = unlimited.evidence(scores, len(next(iter(scores.values()))))
    # "higher": the limit is one of the evidences, so no more than max_refused of them lie above it
    return VerdictRule(bases, scales, float(np.quantile(evidence, 1.0 - max_refused, method="higher")))


# Acquisition changes: how a chest X-ray from another site may differ (the positives see them too).

def rotate(gray: np.ndarray, degrees: float) -> np.ndarray:
    """The image turned by `degrees` about its centre, corners filled with black."""
    image = Image.fromarray(gray.astype(np.float32), mode="F")
    return np.asarray(image.rotate(degrees, Image.Resampling.BILINEAR, fillcolor=0.0))


def bars(gray: np.ndarray, share: float, value: float, axis: int = 1) -> np.ndarray:
    """Bars of `value` on two opposite sides (left and right for axis 1), each `share` of that side."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (int(gray.shape[axis] * share),) * 2
    return np.pad(gray, pad, constant_values=value)


def border(gray: np.ndarray, share: float, value: float) -> np.ndarray:
    """A border of `value` all round, `share` of each side: the same image in a wider field."""
    return np.pad(gray, [(int(side * share),) * 2 for side in gray.shape], constant_values=value)


def crop(gray: np.ndarray, share_h: float, share_w: float, rng: np.random.Generator) -> np.ndarray:
    """A window of `share_h` x `share_w` of the image at a random place: a tighter field."""
    h, w = gray.shape
    ch, cw = max(1, int(h * share_h)), max(1, int(w * share_w))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return gray[top : top + ch, left : left + cw]


def acquisition_change(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random change of the kind that differs between sites (see AUGMENTATION): black or white side bars one
    time in eight, else one change of cxr_pneumonia.acquisition at a severity up to GATE_MAX_SEVERITY."""
    if rng.random() < 1 / 8:
        return bars(gray, rng.uniform(0.02, 0.2), float(rng.integers(2)), axis=int(rng.integers(2)))
    name = str(rng.choice(list(CHANGES)))
    return apply_change(name, gray, float(rng.uniform(0.0, GATE_MAX_SEVERITY)) + 1e-3, rng)


# Negatives made from chest X-rays and from nothing (see NEGATIVES).

def turned(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The chest X-ray turned by 90, 180 or 270 degrees."""
    return np.rot90(gray, int(rng.integers(1, 4))).copy()


def part_of(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A close-up of 15-35 % of each side, or one half stretched to the full width."""
    if rng.random() < 0.5:
        return crop(gray, rng.uniform(0.15, 0.35), rng.uniform(0.15, 0.35), rng)
    h, w = gray.shape
    half = gray[:, : w // 2] if rng.random() < 0.5 else gray[:, w // 2 :]
    return np.asarray(Image.fromarray(half.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR))


def negative_copy(gray: np.ndarray, rng: np.random.Generator, tight: bool) -> np.ndarray:
    """A changed copy of a negative radiograph: an acquisition change, or (`tight`) a crop to 30-70 % of each
    side; mirrored half of the time."""
    changed = crop(gray, rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng) if tight else acquisition_change(gray, rng)
    return np.asarray(changed[:, ::-1] if rng.random() < 0.5 else changed, dtype=np.float32)


def synthetic_picture(rng: np.random.Generator, side: int = 256) -> np.ndarray:
    """A grayscale picture that is not an X-ray: dead-leaves discs, smooth noise, a grating, text or shapes."""
    kind = rng.integers(5)
    if kind == 0:
        return dead_leaves(rng, side)
    if kind == 1:
        noise = gaussian_filter(rng.normal(size=(side, side)), rng.uniform(1, 20))
        return (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    if kind == 2:
        y, x = np.mgrid[0:side, 0:side] / side
        angle, frequency = rng.uniform(0, np.pi), rng.uniform(2, 40)
        wave = np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)))
        return (wave > 0).astype(np.float64) if rng.random() < 0.5 else (wave + 1) / 2
    image = Image.new("L", (side, side), int(rng.integers(0, 256)))
    draw = ImageDraw.Draw(image)
    if kind == 3:
        font = ImageFont.load_default(size=int(rng.integers(10, 28)))
        for top in range(0, side, int(rng.integers(14, 40))):
            text = "".join(chr(int(code)) for code in rng.integers(65, 123, 40))
            draw.text((int(rng.integers(0, 20)), top), text, fill=int(rng.integers(0, 256)), font=font)
    else:
        for _ in range(rng.integers(2, 12)):
            box = sorted(rng.integers(0, side, 2)), sorted(rng.integers(0, side, 2))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([box[0][0], box[1][0], box[0][1], box[1][1]], fill=int(rng.integers(0, 256)))
    return np.asarray(image, dtype=np.float64) / 255


def dead_leaves(rng: np.random.Generator, side: int) -> np.ndarray:
    """Overlapping discs of random grey with a power-law spread of sizes: natural-image statistics."""
    image = Image.new("L", (side, side), int(rng.integers(0, 256)))
    draw = ImageDraw.Draw(image)
    for radius in side * 0.01 / rng.uniform(0.02, 1.0, int(rng.integers(100, 400))) ** 0.8:
        x, y = rng.uniform(0, side, 2)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=int(rng.integers(0, 256)))
    return np.asarray(image, dtype=np.float64) / 255


# Reading images as model inputs.

Change = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def read_inputs(paths: list[str], image_size: int, normalization: str, changes: dict[str, Change | None],
                seed: int) -> dict[str, np.ndarray]:
    """Model inputs of each image under each named change (None: as it is), reading every file once."""
    rng = np.random.default_rng(seed)
    inputs: dict[str, list[np.ndarray]] = {name: [] for name in changes}
    for path in paths:
        gray = read_image_file(path)
        for name, change in changes.items():
            pixels = gray if change is None else np.asarray(change(gray, rng), dtype=np.float32)
            inputs[name].append(to_model_input(pixels, image_size, normalization))
    return {name: _stack(values, image_size) for name, values in inputs.items()}


def _stack(inputs: list[np.ndarray], image_size: int) -> np.ndarray:
    return np.stack(inputs) if inputs else np.zeros((0, image_size, image_size, 1), np.float32)


def category_files(negatives_dir: Path) -> dict[str, list[str]]:
    """The image files of each category folder of the negatives, sorted."""
    folders = sorted(path for path in Path(negatives_dir).iterdir() if path.is_dir())
    files = {folder.name: sorted(str(path) for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
             for folder in folders}
    files = {category: paths for category, paths in files.items() if paths}
    if not files:
        raise FileNotFoundError(f"{negatives_dir} has no category folders with images")
    return files


@dataclass(frozen=True)
class Negatives:
    """What the classifier learns to refuse: model inputs with their class index, the category folder each
    comes from ("" for synthetic ones) and whether it is the image as it is (not a changed copy)."""

    inputs: np.ndarray
    classes: np.ndarray
    categories: np.ndarray
    original: np.ndarray

    def without(self, category: str) -> Negatives:
        """The negatives outside one category."""
        keep = self.categories != category
        return Negatives(self.inputs[keep], self.classes[keep], self.categories[keep], self.original[keep])

    def originals_of(self, category: str) -> np.ndarray:
        """The model inputs of a category's images as they are."""
        return self.inputs[(self.categories == category) & self.original]


def folder_negatives(negatives_dir: Path, image_size: int, normalization: str, seed: int) -> Negatives:
    """The negatives' radiographs, each as it is and in NEGATIVE_COPIES changed copies (see NEGATIVES)."""
    changes: dict[str, Change | None] = {"original": None}
    for copy in range(NEGATIVE_COPIES):
        changes[f"copy{copy}"] = lambda gray, rng, tight=copy == NEGATIVE_COPIES - 1: negative_copy(gray, rng, tight)
    parts = []
    for category, paths in category_files(negatives_dir).items():
        inputs = read_inputs(paths, image_size, normalization, changes, seed)
        stacked = np.concatenate(list(inputs.values()))
        class_index = CLASSES.index(CATEGORY_CLASSES.get(category, "other_body_part"))
        original = np.arange(len(stacked)) < len(paths)
        parts.append(Negatives(stacked, np.full(len(stacked), class_index), np.full(len(stacked), category), original))
    return merge_negatives(parts)


def synthetic_negatives(chest_paths: list[str], image_size: int, normalization: str, seed: int) -> Negatives:
    """Chest X-rays turned and cut down, and pictures that are not X-rays, as many of each as `chest_paths`."""
    made = read_inputs(chest_paths, image_size, normalization, {"turned_chest": turned, "part_of_chest": part_of}, seed)
    rng = np.random.default_rng(seed)
    made["not_xray"] = _stack([to_model_input(synthetic_picture(rng).astype(np.float32), image_size, normalization)
                               for _ in chest_paths], image_size)
    parts = [Negatives(inputs, np.full(len(inputs), CLASSES.index(name)), np.full(len(inputs), ""),
                       np.ones(len(inputs), dtype=bool)) for name, inputs in made.items()]
    return merge_negatives(parts)


def synthetic_sources(chest_paths: list[str], seed: int) -> list[str]:
    """At most MAX_SYNTHETIC_PER_CLASS of the chest X-rays, drawn at random from every source."""
    order = np.random.default_rng(seed).permutation(len(chest_paths))[:MAX_SYNTHETIC_PER_CLASS]
    return [chest_paths[index] for index in sorted(order)]


def merge_negatives(parts: list[Negatives]) -> Negatives:
    """Several sets of negatives as one."""
    return Negatives(*(np.concatenate([getattr(part, key) for part in parts])
                       for key in ("inputs", "classes", "categories", "original")))


# The classifier.

def build_classifier(image_size: int, n_kinds: int) -> tuple[keras.Model, keras.Model]:
    """The classifier on model inputs (area-downsampled to CLASSIFIER_SIZE inside), with its outputs in one
    (n, 1 + n_kinds) tensor (see CLASSIFIER_OUTPUTS), and its core on CLASSIFIER_SIZE inputs with the two heads
    apart, sharing its weights: four conv-batchnorm-ReLU-maxpool stages, then dense heads over the flattened
    map, so where things lie counts."""
    size = (CLASSIFIER_SIZE, CLASSIFIER_SIZE)
    core_input = keras.Input((*size, 1), name="gate_input")
    x = core_input
    for index, filters in enumerate(CLASSIFIER_FILTERS, start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"gate_conv{index}")(x)
        x = layers.BatchNormalization(name=f"gate_bn{index}")(x)
        x = layers.ReLU(name=f"gate_relu{index}")(x)
        x = layers.MaxPooling2D(name=f"gate_pool{index}")(x)
    x = layers.Dropout(0.3, name="gate_dropout")(layers.Flatten(name="gate_flatten")(x))
    heads = [layers.Dense(1, name="gate_not_frontal")(x), layers.Dense(n_kinds, name="gate_kinds")(x)]
    core = keras.Model(core_input, heads, name="gate_core")
    inputs = keras.Input((image_size, image_size, 1), name="model_input")
    not_frontal, kinds = core(layers.Resizing(*size, interpolation="area", name="gate_downsample")(inputs))
    outputs = layers.Concatenate(name="gate_outputs")([not_frontal, kinds])
    return keras.Model(inputs, outputs, name="gate_classifier"), core


def downsample(inputs: np.ndarray) -> np.ndarray:
    """Model inputs area-downsampled to the classifier's size, as its first layer does."""
    resize = layers.Resizing(CLASSIFIER_SIZE, CLASSIFIER_SIZE, interpolation="area")
    chunks = [keras.ops.convert_to_numpy(resize(inputs[start : start + 256])) for start in range(0, len(inputs), 256)]
    return np.concatenate(chunks) if chunks else np.zeros((0, CLASSIFIER_SIZE, CLASSIFIER_SIZE, 1), np.float32)


def half_and_half(negative: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a batch that is half positives, half negatives (`negative` flags each sample)."""
    return np.concatenate([rng.choice(np.flatnonzero(~negative), size // 2),
                           rng.choice(np.flatnonzero(negative), size - size // 2)])


def evenly(classes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a batch spread evenly over the classes present."""
    members = [np.flatnonzero(classes == index) for index in np.unique(classes)]
    counts = [size // len(members) + (index < size % len(members)) for index in range(len(members))]
    return np.concatenate([rng.choice(group, count) for group, count in zip(members, counts, strict=True)])


def train_classifier(positives: np.ndarray, negatives: Negatives, image_size: int, seed: int,
                     epochs: int = CLASSIFIER_EPOCHS) -> keras.Model:
    """The classifier trained on CLASSIFIER_SIZE positives and on negatives: first the trunk with the
    frontal-or-not head, then the kind head alone on the negatives."""
    keras.utils.set_random_seed(seed)
    classifier, core = build_classifier(image_size, len(CLASSES) - 1)
    augmented_input = keras.Input((CLASSIFIER_SIZE, CLASSIFIER_SIZE, 1))
    augmented = layers.RandomFlip("horizontal", seed=seed)(augmented_input)
    augmented = layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed + 1)(augmented)
    not_frontal, kinds = core(augmented)
    inputs = np.concatenate([positives, downsample(negatives.inputs)])
    negative = np.arange(len(inputs)) >= len(positives)
    rng = np.random.default_rng(seed)
    steps = math.ceil(2 * len(positives) / CLASSIFIER_BATCH)
    core.get_layer("gate_kinds").trainable = False
    binary = keras.Model(augmented_input, not_frontal)
    binary.compile(keras.optimizers.Adam(CLASSIFIER_LEARNING_RATE), keras.losses.BinaryCrossentropy(from_logits=True))
    for _ in range(epochs * steps):
        batch = half_and_half(negative, CLASSIFIER_BATCH, rng)
        binary.train_on_batch(inputs[batch], negative[batch].astype(np.float32)[:, None])
    for layer in core.layers:
        layer.trainable = layer.name == "gate_kinds"
    kind_model = keras.Model(augmented_input, kinds)
    kind_model.compile(keras.optimizers.Adam(CLASSIFIER_LEARNING_RATE),
                       keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    kind_inputs, kind_labels = inputs[negative], negatives.classes - 1
    for _ in range(KIND_EPOCHS * steps):
        batch = evenly(kind_labels, CLASSIFIER_BATCH, rng)
        kind_model.train_on_batch(kind_inputs[batch], kind_labels[batch])
    return classifier


def classifier_log_odds(classifier: keras.Model, inputs: np.ndarray) -> np.ndarray:
    """The classifier's log-odds that each model input is not a frontal chest X-ray."""
    if not len(inputs):
        return np.zeros(0)
    return classifier.predict(inputs, batch_size=256, verbose=0)[:, 0].astype(np.float64)


# Scoring and measuring.

def one_class_gate(statistics: GateStatistics, features: Callable[[np.ndarray], np.ndarray]) -> InputGate:
    """A gate of the one-class scores alone that refuses nothing: what scores images while the rule is fitted."""
    never = VerdictRule(dict.fromkeys(ONE_CLASS_SCORES, np.inf), dict.fromkeys(ONE_CLASS_SCORES, 1.0), 0.0)
    return InputGate(statistics, never, features)


def all_scores(one_class: dict[str, np.ndarray], classifier: keras.Model | None,
               inputs: np.ndarray) -> dict[str, np.ndarray]:
    """The one-class scores of some inputs with, given a classifier, its score."""
    if classifier is None:
        return one_class
    return {**one_class, CLASSIFIER_SCORE: classifier_log_odds(classifier, inputs)}


def leave_one_category_out(categories: list[str], refused_without: Callable[[str], np.ndarray]) -> dict[str, dict]:
    """For each category: how many of its images the gate refuses when fitted without it. `refused_without(c)`
    fits without category c and returns a boolean per image of c as it is."""
    results = {}
    for category in categories:
        refused = np.asarray(refused_without(category), dtype=bool)
        results[category] = {"n": len(refused), "refused_left_out": int(refused.sum())}
        print(f"left out {category}: refused {refused.sum()}/{len(refused)}", flush=True)
    return results


def category_counts(negatives: Negatives, refused: Callable[[np.ndarray], np.ndarray]) -> dict[str, dict]:
    """How many of each category's images as they are the gate refuses, with the class each was taught as."""
    counts = {}
    for category in dict.fromkeys(negatives.categories[negatives.categories != ""]):
        flags = refused(negatives.originals_of(category))
        counts[str(category)] = {"class": CATEGORY_CLASSES.get(category, "other_body_part"), "n": len(flags),
                                 "refused": int(flags.sum())}
    return counts


def pooled_counts(categories: dict[str, dict]) -> dict[str, int]:
    """The counts of every category added up."""
    keys = [key for key in ("n", "refused", "refused_left_out") if all(key in row for row in categories.values())]
    return {key: sum(row[key] for row in categories.values()) for key in keys}


def category_table(block: dict) -> str:
    """Markdown table of the share of each negatives category the gate refused, fitted with it and without it."""
    negatives = block.get("negatives")
    if not negatives:
        return ""
    left_out = all("refused_left_out" in row for row in negatives["categories"].values())
    header = "| category | taught as | images | refused by this gate |" + (
        " refused with the category left out of the fit |" if left_out else "")
    lines = [header, "|---|---|---:|---:|" + ("---:|" if left_out else "")]
    rows = [*negatives["categories"].items(), ("all", {**negatives["all"], "class": ""})]
    for category, row in rows:
        line = f"| {category} | {row['class']} | {row['n']} | {_share(row['refused'], row['n'])} |"
        lines.append(line + (f" {_share(row['refused_left_out'], row['n'])} |" if left_out else ""))
    return "\n".join(lines)


def _share(count: int, n: int) -> str:
    if not n:
        return "n/a"
    share = f"{count / n:.0%}"
    if share in ("0%", "100%") and 0 < count < n:  # one decimal rather than a rounding that hides a miss
        share = f"{count / n:.1%}"
    return f"{share} ({count}/{n})"


# Fitting.

def fit_gate(model_dir: Path, data_dirs: list[Path], negatives_dir: Path | None = DEFAULT_NEGATIVES_DIR,
             leave_one_out: bool = True, max_images: int = MAX_FIT_IMAGES, max_refused: float = MAX_VALIDATION_REFUSED,
             seed: int = 0, feature_layers: list[str] | None = None, feature_grid: int = FEATURE_GRID) -> dict:
    """Fit the gate of the model in `model_dir` on the training images of `data_dirs` (and, unless
    `negatives_dir` is None, its classifier); write gate.npz, gate_classifier.keras and the config.json "gate"
    block; return the block."""
    check_sources(model_dir, data_dirs)
    config = json.loads((model_dir / CONFIG_FILENAME).read_text())
    model_config = ModelConfig.from_json(config)
    image_size, normalization = model_config.image_size, model_config.normalization
    keras_model = keras.saving.load_model(model_dir / MODEL_FILENAME, compile=False, safe_mode=True)
    feature_layers = feature_layers or default_feature_layers(keras_model)
    # The folded graph the app runs, so the fitted statistics describe exactly the features it computes.
    features = gate_function(inference_graph(keras_model, model_config.gradcam_layer, feature_layers), feature_layers,
                             grid=feature_grid)
    validation = validation_images(model_dir)
    fitted = fit_images(data_dirs, validation, max_images, seed)
    changes = {"plain": None, "changed": acquisition_change}
    chest = read_inputs(fitted.paths, image_size, normalization, changes, seed)
    positives = np.concatenate([chest["plain"], chest["changed"]])
    statistics, shrinkage = fit_statistics(positives, features(positives))
    one_class = one_class_gate(statistics, features)
    held = read_inputs(validation.paths, image_size, normalization, changes, seed + 1)
    held_inputs = np.concatenate([held["plain"], held["changed"]])
    held_scores = one_class.scores(held_inputs)
    block: dict = {}
    classifier = None
    if negatives_dir is not None:
        negatives = merge_negatives([
            folder_negatives(negatives_dir, image_size, normalization, seed),
            synthetic_negatives(synthetic_sources(fitted.paths, seed), image_size, normalization, seed + 2)])
        small_positives = downsample(positives)

        def fit_with_rule(training: Negatives) -> tuple[keras.Model, VerdictRule]:
            trained = train_classifier(small_positives, training, image_size, seed)
            return trained, choose_rule(all_scores(held_scores, trained, held_inputs), max_refused)

        def refused_with(trained: keras.Model, chosen: VerdictRule) -> Callable[[np.ndarray], np.ndarray]:
            return lambda inputs: chosen.refused(all_scores(one_class.scores(inputs), trained, inputs), len(inputs))

        def refused_without(category: str) -> np.ndarray:
            return refused_with(*fit_with_rule(negatives.without(category)))(negatives.originals_of(category))

        classifier, rule = fit_with_rule(negatives)
        categories = category_counts(negatives, refused_with(classifier, rule))
        if leave_one_out:
            for category, row in leave_one_category_out(list(categories), refused_without).items():
                categories[category]["refused_left_out"] = row["refused_left_out"]
        classifier.save(model_dir / CLASSIFIER_FILENAME)
        block["classifier"] = {
            "file": CLASSIFIER_FILENAME, "classes": list(CLASSES), "outputs": CLASSIFIER_OUTPUTS,
            "input_size": CLASSIFIER_SIZE,
            "filters": list(CLASSIFIER_FILTERS), "trained_on": NEGATIVES, "epochs": CLASSIFIER_EPOCHS,
            "kind_epochs": KIND_EPOCHS,
            "n_negatives_by_class": {name: int(np.sum(negatives.classes == index))
                                     for index, name in enumerate(CLASSES) if index},
        }
        block["negatives"] = {"folder": Path(negatives_dir).name, "categories": categories,
                              "all": pooled_counts(categories), "left_out_one_at_a_time": leave_one_out}
    else:
        rule = choose_rule(held_scores, max_refused)
        (model_dir / CLASSIFIER_FILENAME).unlink(missing_ok=True)
    statistics.save(model_dir / GATE_FILENAME)
    n_held = len(held["plain"])
    held_refused = rule.refused(all_scores(held_scores, classifier, held_inputs), len(held_inputs))
    config["gate"] = {
        "method": GATE_METHOD if classifier is not None else ONE_CLASS_METHOD,
        "file": GATE_FILENAME,
        "feature_layers": feature_layers,
        "feature_grid": feature_grid,
        "thumbnail_size": THUMBNAIL_SIZE,
        "normalization": normalization,
        "fitted_on": f"{', '.join(fitted.source_names)} training images outside validation; {AUGMENTATION}",
        **block,
        "evidence": rule.to_json(),
        "threshold_rule": EVIDENCE_RULE.format(base=BASE_QUANTILE, level=1.0 - max_refused, max_refused=max_refused),
        "validation_refused_fraction": float(held_refused[:n_held].mean()),
        "changed_validation_refused_fraction": float(held_refused[n_held:].mean()),
        "n_fit_images": len(fitted),
        "n_fit_images_by_source": {name: len(fitted.of_source(name)) for name in fitted.source_names},
        "n_validation_images": len(validation),
        "feature_shrinkage": shrinkage,
        "pca_components": len(statistics.thumbnail_components),
        "seed": seed,
    }
    (model_dir / CONFIG_FILENAME).write_text(json.dumps(config, indent=2))
    return config["gate"]


def fit_statistics(inputs: np.ndarray, features: np.ndarray) -> tuple[GateStatistics, float]:
    """The Gaussian of the features and the PCA of the thumbnails, and the covariance shrinkage."""
    feature_mean, precision, shrinkage = fit_feature_gaussian(features)
    thumbnail_mean, components = fit_thumbnail_pca(thumbnails(inputs))
    return GateStatistics(feature_mean, precision, thumbnail_mean, components), shrinkage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model directory with config.json and split.json")
    parser.add_argument("--data", type=Path, nargs="+",
                        help="the data sources the model was trained on (default: the sources in its run.json)")
    parser.add_argument("--negatives", type=Path, default=DEFAULT_NEGATIVES_DIR,
                        help="folder of radiographs that are not frontal chest X-rays, one folder per category")
    parser.add_argument("--one-class-only", action="store_true", help="no classifier: fit on chest X-rays alone")
    parser.add_argument("--no-leave-one-out", action="store_true",
                        help="skip refitting without each category (faster; the card then lacks those numbers)")
    parser.add_argument("--max-images", type=int, default=MAX_FIT_IMAGES, help="training images to fit on")
    parser.add_argument("--max-refused", type=float, default=MAX_VALIDATION_REFUSED,
                        help="largest share of validation images the gate may refuse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--feature-layers", nargs="+", help="layers whose grid averages are the features "
                        "(default: stage3_pool where the model has it, else the penultimate layer)")
    parser.add_argument("--feature-grid", type=int, default=FEATURE_GRID,
                        help="average each feature layer over a grid of this many cells a side (1: global average)")
    args = parser.parse_args(argv)
    block = fit_gate(args.model, args.data or run_sources(args.model), None if args.one_class_only else args.negatives,
                     not args.no_leave_one_out, args.max_images, args.max_refused, args.seed, args.feature_layers,
                     args.feature_grid)
    print(json.dumps({key: block[key] for key in ("evidence", "validation_refused_fraction",
                                                   "changed_validation_refused_fraction", "n_fit_images_by_source",
                                                   "pca_components", "feature_shrinkage")}, indent=2))
    print(category_table(block))


if __name__ == "__main__":
    main()
