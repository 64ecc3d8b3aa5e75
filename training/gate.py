"""Fit the input gate of a model directory on chest X-ray training images alone; write gate.npz and the
"gate" block of config.json.

    python -m training.gate --model runs/cxr_cnn_128 --data ../shared/data/chest_xray

The one-class models are fitted on at most 2000 training images that are not in the run's validation
split, each taken as it is and once more with a random acquisition change (tilt, bars, a wider or tighter
field, exposure, edge enhancement; see AUGMENTATION), so that a chest X-ray framed or processed the way
another site does it is not refused for that alone. Each score's threshold is the same high quantile of that score on the
patient-grouped validation images (again as they are and with one change each): the lowest quantile at
which at most 1 % of them are refused by either score.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from cxr_pneumonia.config import CONFIG_FILENAME, DEFAULT_DATA_DIR, MODEL_FILENAME
from cxr_pneumonia.gate import (
    GATE_FILENAME,
    GATE_METHOD,
    SCORE_NAMES,
    THUMBNAIL_SIZE,
    GateStatistics,
    InputGate,
    default_feature_layers,
    feature_function,
    refused_by,
    thumbnails,
)
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.model import ModelConfig, inference_graph
from cxr_pneumonia.preprocessing import to_model_input
from training.data import LabelledImages, list_labelled_images, validation_images

MAX_FIT_IMAGES = 2000
MAX_VALIDATION_REFUSED = 0.01
PCA_VARIANCE = 0.95
# Features whose spread is below this share of the median spread are standardised by that floor instead,
# so that a unit (almost) silent in training cannot dominate the distance.
FEATURE_SCALE_FLOOR = 0.05
THRESHOLD_RULE = (
    "each score's threshold is its q-quantile on the patient-grouped validation images (as they are and with "
    "one acquisition change each), with q the lowest level at which at most {max_refused:.0%} of them are "
    "refused by either score"
)
AUGMENTATION = (
    "each image as it is and once with one random change: rotation up to 12 degrees, black or white bars of "
    "2-20 % of the width or height on two opposite sides, a border of 5-25 % all round (a wider field), a crop "
    "to 55-95 % of each side (a tighter field), gamma 0.5-2, edge enhancement (unsharp mask), or white "
    "collimator bands of up to 12 % on each side"
)


def fit_images(data_dir: Path, validation: LabelledImages, max_images: int, seed: int) -> LabelledImages:
    """At most `max_images` training images outside the validation split, drawn with `seed`."""
    held_out = {_image_key(path) for path in validation.paths}
    train = list_labelled_images(data_dir / "train")
    keep = np.array([_image_key(path) not in held_out for path in train.paths])
    candidates = np.flatnonzero(keep)
    chosen = np.sort(np.random.default_rng(seed).permutation(candidates)[:max_images])
    if len(chosen) < 2:
        raise ValueError(f"only {len(chosen)} training images outside validation under {data_dir}: too few to fit a gate")
    return LabelledImages([train.paths[i] for i in chosen], train.labels[chosen])


def _image_key(path: str) -> tuple[str, str]:
    """Class folder and file name: the same image whatever the data folder's path."""
    return Path(path).parent.name, Path(path).name


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


def choose_thresholds(scores: dict[str, np.ndarray], max_refused: float) -> tuple[dict[str, float], float]:
    """Per-score q-quantiles, with q the lowest level at which at most `max_refused` are refused by any score."""
    n = len(next(iter(scores.values())))
    for level in np.linspace(1.0 - max_refused / len(scores), 1.0, 201):  # at 1.0 (the maxima) none is refused
        thresholds = {name: float(np.quantile(values, level)) for name, values in scores.items()}
        if refused_by(scores, thresholds, n).mean() <= max_refused:
            break
    return thresholds, float(level)


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


def unsharp_mask(gray: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """Edge enhancement: the image plus `amount` times its difference from a Gaussian blur of `sigma` pixels."""
    return np.clip(gray + amount * (gray - gaussian_filter(gray, sigma)), 0.0, 1.0)


def collimator_bands(gray: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """White (unexposed) bands over the top, bottom, left and right edges, each `shares[i]` of that side."""
    out = gray.copy()
    h, w = gray.shape
    top, bottom, left, right = (int(share * side) for share, side in zip(shares, (h, h, w, w)))
    out[:top], out[h - bottom :], out[:, :left], out[:, w - right :] = 1.0, 1.0, 1.0, 1.0
    return out


def acquisition_change(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random change of the kind that differs between sites (see AUGMENTATION)."""
    kind = rng.integers(7)
    if kind == 0:
        return rotate(gray, rng.uniform(-12, 12))
    if kind == 1:
        return bars(gray, rng.uniform(0.02, 0.2), float(rng.integers(2)), axis=int(rng.integers(2)))
    if kind == 2:
        return border(gray, rng.uniform(0.05, 0.25), rng.uniform(0.0, 0.2))
    if kind == 3:
        return crop(gray, rng.uniform(0.55, 0.95), rng.uniform(0.55, 0.95), rng)
    if kind == 4:
        return gray ** rng.uniform(0.5, 2.0)
    if kind == 5:
        return collimator_bands(gray, rng.uniform(0.0, 0.12, 4))
    return unsharp_mask(gray, rng.uniform(0.5, 2.0), rng.uniform(0.003, 0.02) * min(gray.shape))


def inputs_with_changes(paths: list[str], image_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs of the images as they are, and of each with one random acquisition change."""
    rng = np.random.default_rng(seed)
    plain, changed = [], []
    for path in paths:
        gray = read_image_file(path)
        plain.append(to_model_input(gray, image_size))
        changed.append(to_model_input(np.asarray(acquisition_change(gray, rng), dtype=np.float32), image_size))
    return np.stack(plain), np.stack(changed)


def fit_statistics(inputs: np.ndarray, features: np.ndarray) -> tuple[GateStatistics, float]:
    """The Gaussian of the features and the PCA of the thumbnails, and the covariance shrinkage."""
    feature_mean, precision, shrinkage = fit_feature_gaussian(features)
    thumbnail_mean, components = fit_thumbnail_pca(thumbnails(inputs))
    return GateStatistics(feature_mean, precision, thumbnail_mean, components), shrinkage


def fit_gate(model_dir: Path, data_dir: Path, max_images: int = MAX_FIT_IMAGES,
             max_refused: float = MAX_VALIDATION_REFUSED, seed: int = 0, feature_layers: list[str] | None = None) -> dict:
    """Fit the gate of the model in `model_dir`, write gate.npz and the config.json "gate" block; return it."""
    config = json.loads((model_dir / CONFIG_FILENAME).read_text())
    image_size = int(config["image_size"])
    keras_model = keras.saving.load_model(model_dir / MODEL_FILENAME, compile=False, safe_mode=True)
    feature_layers = feature_layers or default_feature_layers(keras_model)
    # The folded graph the app runs, so the fitted statistics describe exactly the features it computes.
    inference_model = inference_graph(keras_model, ModelConfig.from_json(config).gradcam_layer, feature_layers)
    features = feature_function(inference_model, feature_layers)
    validation = validation_images(model_dir)
    fitted = fit_images(data_dir, validation, max_images, seed)
    inputs = np.concatenate(inputs_with_changes(fitted.paths, image_size, seed))
    statistics, shrinkage = fit_statistics(inputs, features(inputs))
    plain, changed = inputs_with_changes(validation.paths, image_size, seed + 1)
    gate = InputGate(statistics, {name: np.inf for name in SCORE_NAMES}, features)
    plain_scores, changed_scores = gate.scores(plain), gate.scores(changed)
    val_scores = {name: np.concatenate([plain_scores[name], changed_scores[name]]) for name in SCORE_NAMES}
    thresholds, level = choose_thresholds(val_scores, max_refused)
    statistics.save(model_dir / GATE_FILENAME)
    config["gate"] = {
        "method": GATE_METHOD,
        "file": GATE_FILENAME,
        "feature_layers": feature_layers,
        "thumbnail_size": THUMBNAIL_SIZE,
        "fitted_on": AUGMENTATION,
        "thresholds": thresholds,
        "threshold_rule": THRESHOLD_RULE.format(max_refused=max_refused),
        "quantile": level,
        "validation_refused_fraction": float(refused_by(plain_scores, thresholds, len(plain)).mean()),
        "changed_validation_refused_fraction": float(refused_by(changed_scores, thresholds, len(changed)).mean()),
        "n_fit_images": len(fitted),
        "n_validation_images": len(validation),
        "feature_shrinkage": shrinkage,
        "pca_components": int(len(statistics.thumbnail_components)),
        "seed": seed,
    }
    (model_dir / CONFIG_FILENAME).write_text(json.dumps(config, indent=2))
    return config["gate"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model directory with config.json and split.json")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="folder with train/")
    parser.add_argument("--max-images", type=int, default=MAX_FIT_IMAGES, help="training images to fit on")
    parser.add_argument("--max-refused", type=float, default=MAX_VALIDATION_REFUSED,
                        help="largest share of validation images the gate may refuse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--feature-layers", nargs="+", help="layers whose global averages are the features "
                        "(default: stage2_pool stage3_pool pool where the model has them)")
    args = parser.parse_args(argv)
    block = fit_gate(args.model, args.data, args.max_images, args.max_refused, args.seed, args.feature_layers)
    print(json.dumps({key: block[key] for key in ("thresholds", "quantile", "validation_refused_fraction",
                                                   "changed_validation_refused_fraction", "n_fit_images",
                                                   "pca_components", "feature_shrinkage")}, indent=2))


if __name__ == "__main__":
    main()
