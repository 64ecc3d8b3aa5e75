"""How good a saliency map is: where it lands against the radiologists' boxes, whether it depends on what
the model learned, and whether the pixels it ranks first are the ones the model needs.

Measures on one (h, w) map in [0, 1] and a boolean mask of the same size (the union of the boxes):
- the pointing game: is the map's peak inside a box (Zhang et al. 2016; CheXlocalize's hit rate);
- the mass share inside the boxes, and the mass ratio: that share over the boxes' share of the image
  (1 is no better than a uniform map);
- IoU of the map thresholded with Otsu's method against the boxes (CheXlocalize, Saporta et al. 2022).
The model-parameter randomisation check (Adebayo et al. 2018): the Spearman rank correlation between
the map of the trained model and that of a copy whose top layers are re-initialised in cascade.
Faithfulness (Petsiuk et al. 2018, RISE): deletion and insertion curves of the explained class's
probability as the most salient pixels are removed from the image (inserted into a baseline), and
the area under each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
from scipy import ndimage, stats

OTSU_BINS = 256
# A method passes the randomisation check when |Spearman rho| between its maps from the trained model and
# from the randomised copy is below this. Fixed before any method was measured, not tuned: at 0.5 the two
# maps share a quarter of their rank variance (rho squared), so above it the map still orders the pixels
# mostly as before and shows the image and the architecture more than anything the model learned.
RANDOMISATION_MAX_RHO = 0.5
RANDOMISATION_SEED = 0
# Deletion and insertion: the pixels change in this many equal steps, most salient first; both curves use
# the model input blurred with a Gaussian of this share of its side (4 px at 128) as the baseline: it wipes
# out fine texture (vessel and rib edges, air bronchograms) but keeps the film's anatomy and brightness, so
# no black holes (which on a chest film look like air) appear. Every baseline tried reads as pneumonia to our
# models (blurs of 1/32 to 1/4 of the side, zeros, the image's mean, mid-grey: mean probability 0.79-1.00 on
# 20 test images of each source); this mildest blur least so on normals, so a PNEUMONIA map's deletion curve
# cannot fall far whatever the map.
PERTURBATION_STEPS = 32
BASELINE_BLUR_FRACTION = 1 / 32


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels of an image of the given size: top-left corner, width and height."""

    x: float
    y: float
    width: float
    height: float


def box_mask(boxes: Iterable[Box], image_width: int, image_height: int, map_width: int, map_height: int) -> np.ndarray:
    """The (map_height, map_width) boolean union of boxes given in pixels of the image; a map pixel is inside
    when its centre is."""
    columns = (np.arange(map_width) + 0.5) * image_width / map_width
    rows = (np.arange(map_height) + 0.5) * image_height / map_height
    mask = np.zeros((map_height, map_width), dtype=bool)
    for box in boxes:
        inside_rows = (rows >= box.y) & (rows < box.y + box.height)
        inside_columns = (columns >= box.x) & (columns < box.x + box.width)
        mask |= inside_rows[:, np.newaxis] & inside_columns[np.newaxis, :]
    return mask


def boxes_in_field(boxes: Iterable[Box], top: int, left: int) -> list[Box]:
    """Boxes moved into the pixels of a field whose top-left corner lies at (left, top) in the image."""
    return [Box(box.x - left, box.y - top, box.width, box.height) for box in boxes]


def pointing_game_hit(saliency: np.ndarray, mask: np.ndarray) -> bool:
    """True when the map's peak (the first maximum in row-major order) lies inside the mask."""
    return bool(mask.flat[int(np.argmax(saliency))])


def mass_share(saliency: np.ndarray, mask: np.ndarray) -> float:
    """The share of the map's total mass inside the mask (NaN for an empty map or mask)."""
    total = float(np.sum(saliency))
    if total <= 0 or not mask.any():
        return float("nan")
    return float(np.sum(saliency[mask]) / total)


def mass_ratio(saliency: np.ndarray, mask: np.ndarray) -> float:
    """The map's share of mass inside the mask over the mask's share of the image (NaN for an empty map or mask)."""
    return mass_share(saliency, mask) / float(mask.mean()) if mask.any() else float("nan")


def otsu_threshold(values: np.ndarray, bins: int = OTSU_BINS) -> float:
    """Otsu's threshold: the bin edge maximising the between-class variance of the values' histogram."""
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64).ravel(), bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = sum_low / weight_low
        mean_high = (sum_low[-1] - sum_low) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    return float(edges[int(np.argmax(between)) + 1])


def iou(predicted: np.ndarray, mask: np.ndarray) -> float:
    """Intersection over union of two boolean masks (NaN when both are empty)."""
    union = np.logical_or(predicted, mask).sum()
    return float(np.logical_and(predicted, mask).sum() / union) if union else float("nan")


def otsu_iou(saliency: np.ndarray, mask: np.ndarray) -> float:
    """IoU of the map thresholded at Otsu's level (strictly above it) with the mask."""
    return iou(saliency > otsu_threshold(saliency), mask)


def localization_scores(saliency: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Every localisation measure of one map against one mask."""
    return {"hit": float(pointing_game_hit(saliency, mask)), "mass_share": mass_share(saliency, mask),
            "mass_ratio": mass_ratio(saliency, mask), "otsu_iou": otsu_iou(saliency, mask)}


def centre_map(height: int, width: int) -> np.ndarray:
    """A baseline map that peaks at the image centre and falls off with distance: no model at all."""
    rows, columns = np.mgrid[0:height, 0:width]
    distance = np.hypot((rows + 0.5) / height - 0.5, (columns + 0.5) / width - 0.5)
    return (1.0 - distance / distance.max()).astype(np.float32)


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman's rank correlation between two maps' pixels; 0 when either map is flat (it ranks nothing)."""
    first, second = np.ravel(first), np.ravel(second)
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return 0.0
    return float(stats.spearmanr(first, second).statistic)


def passes_randomisation(rho: float) -> bool:
    """True when the map changed enough under randomisation: |rho| below RANDOMISATION_MAX_RHO."""
    return abs(rho) < RANDOMISATION_MAX_RHO


def cascade_groups(model: keras.Model) -> list[tuple[str, ...]]:
    """The layers with weights in the order the cascade re-initialises them, from the logit down; a batch
    normalisation goes with the layer before it."""
    groups: list[tuple[str, ...]] = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.BatchNormalization) and groups:
            groups[-1] = (*groups[-1], layer.name)
        else:
            groups.append((layer.name,))
    return groups[::-1]


def top_groups(model: keras.Model, layer_name: str) -> list[tuple[str, ...]]:
    """The cascade's groups from the logit down to the one that computes `layer_name` (the layer Grad-CAM
    explains): every weight Grad-CAM reads."""
    position = {layer.name: index for index, layer in enumerate(model.layers)}
    groups = cascade_groups(model)
    for depth, group in enumerate(groups, start=1):
        if position[group[0]] <= position[layer_name]:
            return groups[:depth]
    return groups


def randomised_copy(model: keras.Model, layer_names: Iterable[str], seed: int = RANDOMISATION_SEED) -> keras.Model:
    """A copy of `model` with the weights of the named layers re-drawn from each layer's own initialisers
    (seeded); every other weight is the trained one, and `model` itself is left untouched."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for offset, name in enumerate(layer_names):
        layer = copy.get_layer(name)
        for variable in layer.weights:
            initializer = seeded(variable_initializer(layer, variable.name), seed + offset)
            variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))
    return copy


def variable_initializer(layer: keras.layers.Layer, variable_name: str) -> keras.initializers.Initializer:
    """The initialiser a layer drew one of its variables from: kernel -> kernel_initializer,
    depthwise_kernel -> depthwise_initializer, moving_mean -> moving_mean_initializer and so on."""
    for attribute in (f"{variable_name}_initializer", f"{variable_name.removesuffix('_kernel')}_initializer"):
        if hasattr(layer, attribute):
            return keras.initializers.get(getattr(layer, attribute))
    raise ValueError(f"no initialiser for {layer.name}/{variable_name}")


def seeded(initializer: keras.initializers.Initializer, seed: int) -> keras.initializers.Initializer:
    """The same initialiser with a fixed seed, when it draws at random."""
    config = initializer.get_config()
    return type(initializer).from_config({**config, "seed": seed}) if "seed" in config else initializer


@dataclass(frozen=True)
class PerturbationCurves:
    """The explained class's probability after each step of deletion and of insertion."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray

    @property
    def deletion_auc(self) -> float:
        """Area under the deletion curve: lower is better (the probability falls as soon as the top pixels go)."""
        return curve_area(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> float:
        """Area under the insertion curve: higher is better (the top pixels alone bring the probability back)."""
        return curve_area(self.fractions, self.insertion)


def curve_area(fractions: Sequence[float], values: Sequence[float]) -> float:
    """The trapezoid-rule area under a curve sampled at `fractions` of the pixels."""
    return float(np.trapezoid(np.asarray(values, dtype=np.float64), np.asarray(fractions, dtype=np.float64)))


def blurred_baseline(model_input: np.ndarray, fraction: float = BASELINE_BLUR_FRACTION) -> np.ndarray:
    """The (h, w, c) model input blurred with a Gaussian of `fraction` of its side, channel by channel."""
    sigma = fraction * model_input.shape[0]
    return ndimage.gaussian_filter(model_input, sigma=(sigma, sigma, 0)).astype(model_input.dtype)


def perturbation_curves(probability: Callable[[np.ndarray], np.ndarray], model_input: np.ndarray,
                        saliency: np.ndarray, baseline: np.ndarray, steps: int = PERTURBATION_STEPS
                        ) -> PerturbationCurves:
    """Deletion and insertion curves: `probability` (a batch of inputs to the explained class's probabilities)
    after the `k`, 2`k`, ... most salient pixels (ties in row-major order) are replaced by the baseline's,
    and after as many are put into the baseline; `k` = ceil(pixels / steps), one batch for both curves."""
    pixels = saliency.size
    per_step = math.ceil(pixels / steps)
    counts = np.minimum(np.arange(steps + 1) * per_step, pixels)
    rank = np.empty(pixels, dtype=np.int64)
    rank[np.argsort(-np.ravel(saliency), kind="stable")] = np.arange(pixels)
    changed = (rank[np.newaxis, :] < counts[:, np.newaxis]).reshape(-1, *saliency.shape, 1)
    deleted = np.where(changed, baseline[np.newaxis], model_input[np.newaxis])
    inserted = np.where(changed, model_input[np.newaxis], baseline[np.newaxis])
    values = np.asarray(probability(np.concatenate([deleted, inserted]).astype(np.float32)), dtype=np.float64)
    return PerturbationCurves(counts / pixels, values[: steps + 1], values[steps + 1 :])
