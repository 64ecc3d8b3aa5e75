"""Train a pneumonia model from scratch on one or more data sources and write a publishable model directory.

    python -m training.train --data ../shared/data/chest_xray ../shared/data/rsna_pneumonia --out runs/cxr_cnn

Each source gets its own patient-grouped validation split; batches draw every (source, class) group
equally often; the checkpoint kept is the one with the best mean of the per-source validation AUCs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cxr_pneumonia.architectures import ARCHITECTURES, build_model, last_conv_layer_name
from cxr_pneumonia.config import (
    DEFAULT_DATA_DIR,
    DEFAULT_IMAGE_SIZE,
    MAX_IMAGE_SIZE,
    MODEL_FILENAME,
)
from cxr_pneumonia.examples import read_boxes
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.metrics import roc_auc
from cxr_pneumonia.preprocessing import (
    CANONICAL,
    DEFAULT_NORMALIZATION,
    NORMALIZATIONS,
    Normalization,
    reference_energies,
)
from training import data
from training.augment import PRESETS, RAW_ACQUISITION_PRESETS, build_augmenter, build_augmenters
from training.box_supervision import box_supervised_loss, box_supervised_model, cell_size
from training.distributed import (
    AutoShardPolicy,
    any_worker,
    distribution_strategy,
    this_worker,
    with_auto_shard,
    worker_output_dir,
)
from training.run_files import HISTORY_FILENAME, RUN_FILENAME, SPLIT_FILENAME

# The canonical input's reference band energies are the mean over this many training images of each source.
ENERGY_IMAGES_PER_SOURCE = 400


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA_DIR],
                        help="data sources: folders with train/ and test/, or with NORMAL/ and PNEUMONIA/ and a "
                             "test split file (training.splits)")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="cxr_cnn")
    parser.add_argument("--weights", default=None, help="'imagenet' for Keras applications (needs internet)")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="a model directory of ours (same architecture and input size) whose weights training "
                             "starts from: to fine-tune a shipped version with another augmentation")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--patience", type=int, default=8, help="epochs without val AUC gain before stopping")
    parser.add_argument("--time-budget-minutes", type=float, default=0, help="stop after this much training (0: none)")
    parser.add_argument("--augment", choices=PRESETS, default="framing")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default=DEFAULT_NORMALIZATION)
    parser.add_argument("--box-weight", type=float, default=0.0,
                        help="weight of the loss tying Grad-CAM's cells to the radiologists' boxes (0: off; "
                             "see training/box_supervision.py)")
    parser.add_argument("--label-smoothing", type=float, default=0.0,
                        help="train the image logit against labels pulled this far towards 1/2 (0: off), so "
                             "that no image's logit is pushed without end (Szegedy et al. 2016)")
    parser.add_argument("--steps-per-epoch", type=int, default=0, help="batches per epoch (0: one pass's worth)")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--holdout-source", default=None,
                        help="a source (folder name) left out of training and of the checkpoint choice: its "
                             "validation images are only measured, as a stand-in for a hospital never seen")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit", type=int, default=0, help="use only this many images per class (tests)")
    parser.add_argument("--skip-report", action="store_true", help="train only; no calibration or card")
    args = parser.parse_args(argv)
    if not 32 <= args.image_size <= MAX_IMAGE_SIZE:
        parser.error(f"--image-size must be between 32 and {MAX_IMAGE_SIZE}")
    if not 0.0 <= args.label_smoothing < 1.0:
        parser.error("--label-smoothing must be at least 0 and below 1")
    return args


def limit_per_class(images: data.LabelledImages, limit: int, seed: int) -> data.LabelledImages:
    """A random subset of at most `limit` images of each class (for quick tests)."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(images), dtype=bool)
    for label in (0, 1):
        indices = np.flatnonzero(images.labels == label)
        keep[rng.permutation(indices)[:limit]] = True
    return data.subset(images, keep)


class SourceValidation(keras.callbacks.Callback):
    """Validation AUC and loss of each source and their means over the sources trained on (`val_auc`,
    `val_loss`), logged before the checkpoint callbacks read them, so every source counts the same whatever its
    size; a held-out source is logged but chooses nothing."""

    def __init__(self, dataset: tf.data.Dataset, images: data.LabelledImages, classifier: keras.Model,
                 chosen_by: list[str] | None = None):
        super().__init__()
        self.dataset = dataset
        self.images = images
        self.classifier = classifier  # the one-output model, also when fit() trains a box-supervised wrapper
        self.chosen_by = chosen_by or images.source_names

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logits = self.classifier.predict(self.dataset, verbose=0).reshape(-1)
        sources = np.array(self.images.sources)
        labels = self.images.labels.astype(np.float64)
        losses = np.logaddexp(0.0, logits) - labels * logits
        aucs = {name: roc_auc(labels[sources == name], logits[sources == name]) for name in self.images.source_names}
        if logs is not None:
            logs.update({f"val_auc_{name}": value for name, value in aucs.items()})
            logs["val_auc"] = float(np.mean([aucs[name] for name in self.chosen_by]))
            logs["val_loss"] = float(np.mean([losses[sources == name].mean() for name in self.chosen_by]))
        print(f"epoch {epoch + 1}: validation AUC " + ", ".join(f"{k} {v:.4f}" for k, v in aucs.items()))


class SaveBest(keras.callbacks.Callback):
    """Save the one-output classifier whenever `val_auc` improves (ModelCheckpoint would save the training wrapper)."""

    def __init__(self, classifier: keras.Model, path: Path):
        super().__init__()
        self.classifier = classifier
        self.path = path
        self.best = -np.inf

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs and logs["val_auc"] > self.best:
            self.best = logs["val_auc"]
            self.classifier.save(self.path)


class TimeBudget(keras.callbacks.Callback):
    """Stop training at the end of the first epoch that passes a wall-time budget."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        over_budget = time.perf_counter() - self.started > self.seconds
        if any_worker(self.model.distribute_strategy, over_budget):
            print(f"time budget of {self.seconds / 60:.0f} min reached after epoch {epoch + 1}")
            self.model.stop_training = True


def train(args: argparse.Namespace) -> Path:
    """Fit the model, keep the best checkpoint by validation AUC and write the run files (the chief's go to
    --out). --batch-size is per worker: each step trains on batch size x workers images."""
    worker = this_worker()
    strategy = distribution_strategy(worker)
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    out = worker_output_dir(args.out, worker)
    out.mkdir(parents=True, exist_ok=True)

    sources = [data.development_images(folder) for folder in args.data]
    if args.limit:
        sources = [limit_per_class(images, args.limit, args.seed) for images in sources]
    train_images, val_images = data.split_each_source(data.concatenate(sources), args.val_fraction, args.seed)
    if args.holdout_source:
        if args.holdout_source not in train_images.source_names:
            raise ValueError(f"--holdout-source {args.holdout_source} is not one of {train_images.source_names}")
        train_images = data.subset(train_images, np.array(train_images.sources) != args.holdout_source)
    normalization = training_normalization(args.normalization, train_images, args.seed)
    (out / SPLIT_FILENAME).write_text(json.dumps({"validation": val_images.paths, "seed": args.seed}, indent=1))
    for name in val_images.source_names:
        print(f"{name}: train {len(train_images.of_source(name))} images, "
              f"validation {len(val_images.of_source(name))} images (patient-grouped)")

    # tf.distribute takes a dataset batch as the global batch and feeds each worker batch_size of it. The
    # endless training stream is not sharded (DATA sharding would have every worker decode and augment all
    # images to keep its share): each worker draws its own stream from its own seed. Validation is sharded
    # and predict() gathers all shares on every worker, so all log the same val_auc and decide alike.
    global_batch_size = args.batch_size * worker.count
    stream_seed = args.seed + worker.index
    with strategy.scope():
        classifier = build_model(args.arch, args.image_size, args.weights)
        if args.init_from:
            classifier.set_weights(keras.saving.load_model(args.init_from / MODEL_FILENAME, compile=False,
                                                           safe_mode=True).get_weights())
        trained = box_supervised_model(classifier) if args.box_weight else classifier
        compile_arguments = loss_and_metrics(args.box_weight, args.label_smoothing)
        trained.compile(optimizer=keras.optimizers.Adam(args.learning_rate), **compile_arguments)
    classifier.summary()
    cells = cell_size(classifier) if args.box_weight else 0
    train_ds = training_stream(args, train_images, global_batch_size, stream_seed, cells, normalization)
    train_ds = with_auto_shard(train_ds, AutoShardPolicy.OFF)
    val_ds = data.evaluation_dataset(val_images, args.image_size, global_batch_size, normalization)
    val_ds = with_auto_shard(val_ds, AutoShardPolicy.DATA)
    steps_per_epoch = args.steps_per_epoch or -(-len(train_images) // global_batch_size)
    callbacks = [
        SourceValidation(val_ds, val_images, classifier, chosen_by=train_images.source_names),
        SaveBest(classifier, out / MODEL_FILENAME),
        keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=args.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max", factor=0.3, patience=3, min_lr=1e-5),
        keras.callbacks.CSVLogger(out / HISTORY_FILENAME),
    ]
    if args.time_budget_minutes:
        callbacks.append(TimeBudget(args.time_budget_minutes * 60))
    started = time.perf_counter()
    history = trained.fit(train_ds, epochs=args.epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=2)
    run = {
        "arch": args.arch,
        "weights": args.weights,
        "image_size": args.image_size,
        "augment": args.augment,
        "normalization": args.normalization,
        "band_energies": list(normalization.band_energies),
        "sources": [str(folder) for folder in args.data],
        "steps_per_epoch": steps_per_epoch,
        "seed": args.seed,
        "epochs_run": len(history.history["loss"]),
        "best_val_auc": float(max(history.history["val_auc"])),
        "train_seconds": round(time.perf_counter() - started, 1),
        "n_train": len(train_images),
        "n_validation": len(val_images),
        "gradcam_layer": last_conv_layer_name(classifier),
        "box_weight": args.box_weight,
        "label_smoothing": args.label_smoothing,
        "holdout_source": args.holdout_source,
        "init_from": None if args.init_from is None else json.loads((args.init_from / "config.json").read_text()).get(
            "version", str(args.init_from)),
        "batch_size": args.batch_size,
        "workers": worker.count,
        "global_batch_size": global_batch_size,
        "learning_rate": args.learning_rate,
        "limit_per_class": args.limit,
        "time_budget_minutes": args.time_budget_minutes,
        "max_epochs": args.epochs,
    }
    (out / RUN_FILENAME).write_text(json.dumps(run, indent=2))
    return out


def training_normalization(name: str, images: data.LabelledImages, seed: int) -> Normalization:
    """The normalisation named `name`; for the canonical input, with the band energies of up to
    ENERGY_IMAGES_PER_SOURCE training images of each source, the sources weighing the same."""
    if name != CANONICAL:
        return Normalization(name)
    rng = np.random.default_rng(seed)
    per_source = []
    for source in images.source_names:
        paths = images.of_source(source).paths
        chosen = rng.permutation(len(paths))[:ENERGY_IMAGES_PER_SOURCE]
        per_source.append(reference_energies([read_image_file(paths[index]) for index in chosen]))
    energies = tuple(float(value) for value in np.mean(per_source, axis=0))
    print("band energies (finest first, then the residual): " + ", ".join(f"{value:.4f}" for value in energies))
    return Normalization(name, energies)


def loss_and_metrics(box_weight: float, label_smoothing: float = 0.0) -> dict:
    """compile() arguments: the image loss with AUC and accuracy, or the box-supervised loss alone."""
    if box_weight:
        return {"loss": box_supervised_loss(box_weight, label_smoothing)}
    return {"loss": keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=label_smoothing),
            "metrics": [keras.metrics.AUC(name="auc", from_logits=True), keras.metrics.BinaryAccuracy(threshold=0.0)]}


def training_stream(args: argparse.Namespace, images: data.LabelledImages, batch_size: int, seed: int,
                    cells: int, normalization: Normalization) -> tf.data.Dataset:
    """Balanced augmented training batches; with --box-weight, with each image's cell targets from its boxes."""
    acquisition = args.augment in RAW_ACQUISITION_PRESETS
    if not args.box_weight:
        return data.training_dataset(images, args.image_size, batch_size, build_augmenter(args.augment, seed), seed,
                                     normalization, acquisition)
    boxes = {name: found for folder in args.data for name, found in read_boxes(folder).items()}
    return data.box_supervised_dataset(images, args.image_size, batch_size, build_augmenters(args.augment, seed),
                                       seed, normalization, boxes, cells, acquisition)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = train(args)
    if not args.skip_report and this_worker().is_chief:
        from training.report import write_report

        write_report(out, args.data)


if __name__ == "__main__":
    main()
