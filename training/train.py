"""Train a pneumonia model from scratch and write a publishable model directory.

    python -m training.train --data ../shared/data/chest_xray --out runs/cxr_cnn
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
from training import data
from training.augment import PRESETS, build_augmenter
from training.data import SPLIT_FILENAME

HISTORY_FILENAME = "history.csv"
RUN_FILENAME = "run.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="folder with train/ and test/")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="cxr_cnn")
    parser.add_argument("--weights", default=None, help="'imagenet' for Keras applications (needs internet)")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--patience", type=int, default=8, help="epochs without val AUC gain before stopping")
    parser.add_argument("--time-budget-minutes", type=float, default=0, help="stop after this much training (0: none)")
    parser.add_argument("--augment", choices=PRESETS, default="framing")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit", type=int, default=0, help="use only this many images per class (tests)")
    parser.add_argument("--skip-report", action="store_true", help="train only; no calibration or card")
    args = parser.parse_args(argv)
    if not 32 <= args.image_size <= MAX_IMAGE_SIZE:
        parser.error(f"--image-size must be between 32 and {MAX_IMAGE_SIZE}")
    return args


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights that make both classes count equally in the loss."""
    counts = np.bincount(labels, minlength=2)
    return {index: len(labels) / (2.0 * count) for index, count in enumerate(counts)}


def limit_per_class(images: data.LabelledImages, limit: int, seed: int) -> data.LabelledImages:
    """A random subset of at most `limit` images of each class (for quick tests)."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(images), dtype=bool)
    for label in (0, 1):
        indices = np.flatnonzero(images.labels == label)
        keep[rng.permutation(indices)[:limit]] = True
    return data._subset(images, keep)


class TimeBudget(keras.callbacks.Callback):
    """Stop training at the end of the first epoch that passes a wall-time budget."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.perf_counter() - self.started > self.seconds:
            print(f"time budget of {self.seconds / 60:.0f} min reached after epoch {epoch + 1}")
            self.model.stop_training = True


def distribution_strategy() -> tf.distribute.Strategy:
    """Mirror across GPUs when there are several, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def train(args: argparse.Namespace) -> Path:
    """Fit the model, keep the best checkpoint by validation AUC and write the run files."""
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    everything = data.list_labelled_images(args.data / "train")
    if args.limit:
        everything = limit_per_class(everything, args.limit, args.seed)
    train_images, val_images = data.split_by_patient(everything, args.val_fraction, args.seed)
    (out / SPLIT_FILENAME).write_text(json.dumps({"validation": val_images.paths, "seed": args.seed}, indent=1))
    print(f"train {len(train_images)} images, validation {len(val_images)} images (patient-grouped)")

    train_ds = data.training_dataset(
        train_images, args.image_size, args.batch_size, build_augmenter(args.augment, args.seed), args.seed
    )
    val_ds = data.evaluation_dataset(val_images, args.image_size, args.batch_size)

    with distribution_strategy().scope():
        model = build_model(args.arch, args.image_size, args.weights)
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            metrics=[keras.metrics.AUC(name="auc", from_logits=True), keras.metrics.BinaryAccuracy(threshold=0.0)],
        )
    model.summary()
    callbacks = [
        keras.callbacks.ModelCheckpoint(out / MODEL_FILENAME, monitor="val_auc", mode="max", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=args.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max", factor=0.3, patience=3, min_lr=1e-5),
        keras.callbacks.CSVLogger(out / HISTORY_FILENAME),
    ]
    if args.time_budget_minutes:
        callbacks.append(TimeBudget(args.time_budget_minutes * 60))
    started = time.perf_counter()
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=args.epochs,
        class_weight=class_weights(train_images.labels), callbacks=callbacks, verbose=2,
    )
    run = {
        "arch": args.arch,
        "weights": args.weights,
        "image_size": args.image_size,
        "augment": args.augment,
        "seed": args.seed,
        "epochs_run": len(history.history["loss"]),
        "best_val_auc": float(max(history.history["val_auc"])),
        "train_seconds": round(time.perf_counter() - started, 1),
        "n_train": len(train_images),
        "n_validation": len(val_images),
        "gradcam_layer": last_conv_layer_name(model),
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "limit_per_class": args.limit,
        "time_budget_minutes": args.time_budget_minutes,
        "max_epochs": args.epochs,
    }
    (out / RUN_FILENAME).write_text(json.dumps(run, indent=2))
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = train(args)
    if not args.skip_report:
        from training.report import write_report

        write_report(out, args.data)


if __name__ == "__main__":
    main()
