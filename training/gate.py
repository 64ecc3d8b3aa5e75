"""Fit the input gate of a model directory: write gate.npz, gate_classifier.keras and the "gate" block of its
config.json, with the share of each category of other radiographs it refuses.

    python -m training.gate --model model --data ../shared/data/chest_xray ../shared/data/rsna_pneumonia

Positives are at most 2000 training images of the model's sources (equal shares per source; --data defaults
to the sources in the run's run.json), outside the run's validation split, each as it is and once with a random
acquisition change (tilt, bars, a wider or tighter field, exposure, edge enhancement; see
training.gate_images.AUGMENTATION), so that a chest X-ray framed or processed the way another site does it is not
refused for that alone, all preprocessed with the model's own normalisation. The one-class models (feature
Gaussian, thumbnail PCA) are fitted on them alone. The classifier, a small CNN (training.gate_classifier), learns
to tell them from negatives (see training.gate_images.NEGATIVES): the radiographs of --negatives (one folder per
category, default ../shared/data/other_radiographs), chest X-rays turned or cut down, and synthetic pictures that
are not X-rays.

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
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from cxr_pneumonia.config import CONFIG_FILENAME, DATA_ROOT, DEFAULT_DATA_DIR, MODEL_FILENAME
from cxr_pneumonia.gate import (
    CLASSIFIER_FILENAME,
    CLASSIFIER_SCORE,
    FEATURE_GRID,
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
from cxr_pneumonia.model import ModelConfig, inference_graph
from training.data import (
    LabelledImages,
    concatenate,
    development_images,
    source_of,
    subset,
    validation_images,
)
from training.gate_classifier import (
    CLASSIFIER_EPOCHS,
    CLASSIFIER_FILTERS,
    CLASSIFIER_OUTPUTS,
    CLASSIFIER_SIZE,
    KIND_EPOCHS,
    classifier_log_odds,
    downsample,
    train_classifier,
)
from training.gate_images import (
    AUGMENTATION,
    CATEGORY_CLASSES,
    CLASSES,
    NEGATIVES,
    Negatives,
    acquisition_change,
    folder_negatives,
    merge_negatives,
    read_inputs,
    synthetic_negatives,
    synthetic_sources,
)
from training.run_files import read_run

DEFAULT_NEGATIVES_DIR = DATA_ROOT / "other_radiographs"
MAX_FIT_IMAGES = 2000
MAX_VALIDATION_REFUSED = 0.01
PCA_VARIANCE = 0.95
# Features whose spread is below this share of the median spread are standardised by that floor instead,
# so that a unit (almost) silent in training cannot dominate the distance.
FEATURE_SCALE_FLOOR = 0.05
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
    image_size, normalization = model_config.image_size, model_config.preprocessing
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
        "normalization": normalization.name,
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
