"""Listing labelled images, the patient-grouped validation split and the tf.data pipeline."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from cxr_pneumonia.config import LABELS
from cxr_pneumonia.preprocessing import load_model_input

SPLIT_FILENAME = "split.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".dcm"}
_PERSON = re.compile(r"^(person\d+)_")
_IM_SERIES = re.compile(r"^(?:NORMAL2-)?(IM-\d+)")


@dataclass(frozen=True)
class LabelledImages:
    """Image paths with 0/1 labels (1 = pneumonia)."""

    paths: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def list_labelled_images(folder: str | Path) -> LabelledImages:
    """Images under folder/NORMAL and folder/PNEUMONIA, sorted for reproducibility."""
    folder = Path(folder)
    paths, labels = [], []
    for label_index, label in enumerate(LABELS):
        class_dir = folder / label
        if not class_dir.is_dir():
            raise FileNotFoundError(f"{folder} has no {label}/ folder")
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(str(path))
                labels.append(label_index)
    return LabelledImages(paths, np.asarray(labels, dtype=np.int32))


def validation_images(run_dir: str | Path) -> LabelledImages:
    """The patient-grouped validation images recorded by training in the run's split.json."""
    paths = json.loads((Path(run_dir) / SPLIT_FILENAME).read_text())["validation"]
    labels = np.array([LABELS.index(Path(path).parent.name) for path in paths], dtype=np.int32)
    return LabelledImages(paths, labels)


def patient_id(path: str | Path) -> str:
    """Patient key from a Kermany filename; NORMAL2-IM-n and IM-n are merged to be safe."""
    stem = Path(path).stem
    match = _PERSON.match(stem) or _IM_SERIES.match(stem)
    return match.group(1) if match else stem


def split_by_patient(
    images: LabelledImages, val_fraction: float, seed: int
) -> tuple[LabelledImages, LabelledImages]:
    """Hold out about `val_fraction` of each class, whole patients only."""
    rng = np.random.default_rng(seed)
    patients = np.array([patient_id(path) for path in images.paths])
    val_patients: set[str] = set()
    for label_index in range(len(LABELS)):
        in_class = images.labels == label_index
        unique, counts = np.unique(patients[in_class], return_counts=True)
        order = rng.permutation(len(unique))
        target = val_fraction * in_class.sum()
        taken = 0
        for index in order:
            if taken >= target:
                break
            val_patients.add(unique[index])
            taken += counts[index]
    is_val = np.array([patient in val_patients for patient in patients])
    return _subset(images, ~is_val), _subset(images, is_val)


def _subset(images: LabelledImages, mask: np.ndarray) -> LabelledImages:
    return LabelledImages([p for p, keep in zip(images.paths, mask) if keep], images.labels[mask])


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, used to pin the data manifest a model was trained on."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def image_dataset(images: LabelledImages, image_size: int) -> tf.data.Dataset:
    """Decoded, preprocessed (image, label) pairs, decoded in parallel, in file order."""

    def load(path: tf.Tensor) -> tf.Tensor:
        image = tf.numpy_function(
            lambda p: load_model_input(p.decode(), image_size), [path], tf.float32
        )
        return tf.ensure_shape(image, (image_size, image_size, 1))

    paths = tf.data.Dataset.from_tensor_slices(images.paths)
    labels = tf.data.Dataset.from_tensor_slices(images.labels.astype(np.float32))
    decoded = paths.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return tf.data.Dataset.zip((decoded, labels))


def training_dataset(
    images: LabelledImages,
    image_size: int,
    batch_size: int,
    augmenter: tf.keras.layers.Layer | None,
    seed: int,
) -> tf.data.Dataset:
    """Cached, shuffled, augmented and prefetched batches for `fit`."""
    dataset = image_dataset(images, image_size).cache()
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augmenter is not None:
        dataset = dataset.map(
            lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(images: LabelledImages, image_size: int, batch_size: int) -> tf.data.Dataset:
    """Cached, ordered, prefetched batches for validation."""
    return image_dataset(images, image_size).cache().batch(batch_size).prefetch(tf.data.AUTOTUNE)
