"""Data sources, their test and patient-grouped validation splits, and the tf.data pipelines.

A source is one data set folder: either with train/ and test/ inside (Kermany's official split), or with
NORMAL/ and PNEUMONIA/ at its top, whose test split is a file in training/splits/ (see training.splits).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from cxr_pneumonia.config import LABELS
from cxr_pneumonia.explanation_quality import Box, box_mask, boxes_in_field
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.preprocessing import DEFAULT_NORMALIZATION, Normalization, load_model_input, prepare_input
from training.acquisition_pool import acquisition_pool
from training.run_files import SPLIT_FILENAME

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".dcm"}
SPLIT_FOLDERS = ("train", "test", "val")
_PERSON = re.compile(r"^(person\d+)_")
_IM_SERIES = re.compile(r"^(?:NORMAL2-)?(IM-\d+)")


@dataclass(frozen=True)
class LabelledImages:
    """Image paths with 0/1 labels (1 = pneumonia) and the data source each comes from."""

    paths: list[str]
    labels: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def of_source(self, source: str) -> LabelledImages:
        """The images of one source."""
        return subset(self, np.array([name == source for name in self.sources], dtype=bool))

    @property
    def source_names(self) -> list[str]:
        """The sources present, in order of first appearance."""
        return list(dict.fromkeys(self.sources))


def source_of(path: str | Path) -> str:
    """The data source of an image path: the data set folder above its class (and split) folder."""
    above_class = Path(path).parent.parent
    return above_class.parent.name if above_class.name in SPLIT_FOLDERS else above_class.name


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
    return LabelledImages(paths, np.asarray(labels, dtype=np.int32), [source_of(path) for path in paths])


def concatenate(parts: list[LabelledImages]) -> LabelledImages:
    """Several image lists as one, in order."""
    return LabelledImages([p for part in parts for p in part.paths],
                          np.concatenate([part.labels for part in parts]).astype(np.int32),
                          [s for part in parts for s in part.sources])


def has_official_split(data_dir: str | Path) -> bool:
    """True for a data set with train/ and test/ folders (Kermany's layout)."""
    return (Path(data_dir) / "train").is_dir() and (Path(data_dir) / "test").is_dir()


def test_split_file(data_dir: str | Path) -> Path:
    """Where the held-out test split of a data set without an official one is written."""
    return SPLITS_DIR / f"{Path(data_dir).resolve().name}_test.csv"


def read_test_split(data_dir: str | Path) -> list[str]:
    """Relative paths (CLASS/file) of a data set's held-out test images, from its split file."""
    path = test_split_file(data_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{Path(data_dir).name} has no official test split and {path} is missing; "
                                f"write it once with: python -m training.splits --data {data_dir}")
    with path.open() as handle:
        return [row["path"] for row in csv.DictReader(line for line in handle if not line.startswith("#"))]


def development_images(data_dir: str | Path) -> LabelledImages:
    """A source's images for training and validation: train/, or everything outside its test split file."""
    return split_images(Path(data_dir), "train", held_out=False)


def test_images(data_dir: str | Path) -> LabelledImages:
    """A source's test images: test/, or the images named in its test split file."""
    return split_images(Path(data_dir), "test", held_out=True)


def split_images(data_dir: Path, official_folder: str, held_out: bool) -> LabelledImages:
    """The official split folder's images, or those (not) named in the data set's test split file."""
    if has_official_split(data_dir):
        return list_labelled_images(data_dir / official_folder)
    test_paths = set(read_test_split(data_dir))
    everything = list_labelled_images(data_dir)
    return subset(everything, np.array([(relative_path(p) in test_paths) == held_out for p in everything.paths]))


def relative_path(path: str | Path) -> str:
    """CLASS/filename of an image path."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def validation_images(run_dir: str | Path) -> LabelledImages:
    """The patient-grouped validation images recorded by training in the run's split.json."""
    paths = json.loads((Path(run_dir) / SPLIT_FILENAME).read_text())["validation"]
    labels = np.array([LABELS.index(Path(path).parent.name) for path in paths], dtype=np.int32)
    return LabelledImages(paths, labels, [source_of(path) for path in paths])


def patient_id(path: str | Path) -> str:
    """Patient key from a filename: Kermany's personN / IM-n (NORMAL2-IM-n merged); else the file stem
    (RSNA files are named by patientId, one image per patient)."""
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
    return subset(images, ~is_val), subset(images, is_val)


def split_each_source(
    images: LabelledImages, val_fraction: float, seed: int
) -> tuple[LabelledImages, LabelledImages]:
    """A patient-grouped validation split cut from each source on its own."""
    splits = [split_by_patient(images.of_source(source), val_fraction, seed) for source in images.source_names]
    return concatenate([fit for fit, _ in splits]), concatenate([val for _, val in splits])


def subset(images: LabelledImages, mask: np.ndarray) -> LabelledImages:
    """The images where `mask` is True."""
    return LabelledImages([p for p, keep in zip(images.paths, mask, strict=True) if keep], images.labels[mask],
                          [s for s, keep in zip(images.sources, mask, strict=True) if keep])


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, used to pin the data manifest a model was trained on."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def image_dataset(images: LabelledImages, image_size: int,
                  normalization: str | Normalization = DEFAULT_NORMALIZATION) -> tf.data.Dataset:
    """Decoded, preprocessed (image, label) pairs, decoded in parallel, in file order."""

    def load(path: tf.Tensor) -> tf.Tensor:
        image = tf.numpy_function(
            lambda p: load_model_input(p.decode(), image_size, normalization), [path], tf.float32
        )
        return tf.ensure_shape(image, (image_size, image_size, 1))

    paths = tf.data.Dataset.from_tensor_slices(images.paths)
    labels = tf.data.Dataset.from_tensor_slices(images.labels.astype(np.float32))
    decoded = paths.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return tf.data.Dataset.zip((decoded, labels))


def boxed_image_dataset(images: LabelledImages, image_size: int, normalization: str | Normalization,
                        boxes: dict[str, list[Box]]) -> tf.data.Dataset:
    """(image and box mask stacked as 2 channels, label, box weight): the mask is the union of the image's boxes
    at the input size; its weight is 1 where the mask is known (a box-annotated pneumonia, or a normal, whose mask
    is empty) and 0 for a pneumonia without boxes."""

    def load(path: bytes, label: np.float32) -> tuple[np.ndarray, np.float32]:
        gray = read_image_file(path.decode())
        image_boxes = boxes.get(Path(path.decode()).name, [])
        model_input, field = prepare_input(gray, image_size, normalization)
        mask = box_mask(boxes_in_field(image_boxes, field.top, field.left), field.width, field.height, image_size,
                        image_size).astype(np.float32)
        stacked = np.concatenate([model_input, mask[..., np.newaxis]], axis=-1)
        return stacked, np.float32(bool(image_boxes) or label == 0)

    def load_tensor(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        stacked, weight = tf.numpy_function(load, [path, label], (tf.float32, tf.float32))
        return tf.ensure_shape(stacked, (image_size, image_size, 2)), label, tf.ensure_shape(weight, ())

    pairs = tf.data.Dataset.from_tensor_slices((images.paths, images.labels.astype(np.float32)))
    return pairs.map(load_tensor, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def pooled_stream(images: LabelledImages, pools: dict[str, np.ndarray], boxes: dict[str, list[Box]],
                  seed: int) -> tf.data.Dataset:
    """Every (source, class) group's changed copies from the acquisition pool (training.acquisition_pool), reshuffled
    each pass and drawn equally often: (model input with the box mask stacked, label, box weight as in
    boxed_image_dataset)."""
    groups = []
    for index, group in enumerate(balance_groups(images)):
        copies = np.concatenate([pools[path] for path in group.paths])
        variants = len(copies) // len(group)
        labels = np.repeat(group.labels.astype(np.float32), variants)
        known = np.array([bool(boxes.get(Path(path).name)) or label == 0
                          for path, label in zip(group.paths, group.labels, strict=True)])
        weights = np.repeat(known.astype(np.float32), variants)
        dataset = tf.data.Dataset.from_tensor_slices((copies, labels, weights))
        groups.append(dataset.shuffle(len(labels), seed=seed + index, reshuffle_each_iteration=True))
    return sample_equally(groups, seed).map(lambda x, y, w: (tf.cast(x, tf.float32) / 255.0, y, w),
                                            num_parallel_calls=tf.data.AUTOTUNE)


def box_targets(augment_geometry, augment_grey_levels, cell_size: int):
    """A batch map from (stacked image and mask, label, weight) to (image, [label, cell targets..., weight]): the
    geometric augmentation moves image and mask alike, the grey-level one touches the image only, and the mask
    is averaged over each cell of the map that Grad-CAM explains."""

    def to_targets(stacked: tf.Tensor, label: tf.Tensor, weight: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if augment_geometry is not None:
            stacked = augment_geometry(stacked, training=True)
        image, mask = stacked[..., :1], stacked[..., 1:]
        if augment_grey_levels is not None:
            image = augment_grey_levels(image, training=True)
        cells = tf.nn.avg_pool2d(mask, cell_size, cell_size, "VALID")
        flat = tf.reshape(cells, (tf.shape(cells)[0], -1))
        return image, tf.concat([label[:, tf.newaxis], flat, weight[:, tf.newaxis]], axis=1)

    return to_targets


def acquisition_pools(images: LabelledImages, image_size: int, normalization: str | Normalization,
                      boxes: dict[str, list[Box]], seed: int) -> dict[str, np.ndarray]:
    """The changed copies of every training image, made (or read from the cache) one source at a time, so that runs
    training on the same source share them."""
    pools: dict[str, np.ndarray] = {}
    for source in images.source_names:
        pools |= acquisition_pool(images.of_source(source).paths, boxes, image_size, normalization, seed)
    return pools


def balance_groups(images: LabelledImages) -> list[LabelledImages]:
    """The images split into one group per (source, class) present."""
    groups = []
    for source in images.source_names:
        of_source = images.of_source(source)
        groups += [subset(of_source, of_source.labels == label) for label in range(len(LABELS))
                   if np.any(of_source.labels == label)]
    return groups


def sample_equally(datasets: list[tf.data.Dataset], seed: int) -> tf.data.Dataset:
    """An endless stream drawing each element from one of `datasets` chosen uniformly at random."""
    repeated = [dataset.repeat() for dataset in datasets]
    return tf.data.Dataset.sample_from_datasets(repeated, weights=[1.0 / len(datasets)] * len(datasets), seed=seed)


def training_dataset(
    images: LabelledImages,
    image_size: int,
    batch_size: int,
    augmenter: tf.keras.layers.Layer | None,
    seed: int,
    normalization: str | Normalization = DEFAULT_NORMALIZATION,
    acquisition: bool = False,
) -> tf.data.Dataset:
    """Endless augmented batches in which every (source, class) group is drawn equally often, so neither a
    hospital nor its class mix is a label cue; each group is cached and reshuffled on each pass. With
    `acquisition`, each image first gets a random change of acquisition at its own size (acquisition_inputs)."""
    if acquisition:
        pools = acquisition_pools(images, image_size, normalization, {}, seed)
        dataset = pooled_stream(images, pools, {}, seed).map(lambda x, y, _: (x[..., :1], y))
    else:
        dataset = balanced_stream(images, seed, lambda group: image_dataset(group, image_size, normalization))
    dataset = dataset.batch(batch_size)
    if augmenter is not None:
        dataset = dataset.map(
            lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def box_supervised_dataset(images: LabelledImages, image_size: int, batch_size: int, augmenters: tuple,
                           seed: int, normalization: str | Normalization, boxes: dict[str, list[Box]],
                           cell_size: int,
                           acquisition: bool = False) -> tf.data.Dataset:
    """training_dataset's balanced, augmented batches with each image's cell targets from its boxes (box_targets);
    with `acquisition`, each image first gets a random change of acquisition at its own size (acquisition_inputs)."""
    if acquisition:
        dataset = pooled_stream(images, acquisition_pools(images, image_size, normalization, boxes, seed), boxes, seed)
    else:
        dataset = balanced_stream(images, seed,
                                  lambda group: boxed_image_dataset(group, image_size, normalization, boxes))
    dataset = dataset.batch(batch_size).map(box_targets(*augmenters, cell_size), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def balanced_stream(images: LabelledImages, seed: int, decode) -> tf.data.Dataset:
    """Every (source, class) group decoded by `decode`, cached, reshuffled each pass, drawn equally often."""
    groups = [decode(group).cache().shuffle(len(group), seed=seed + index, reshuffle_each_iteration=True)
              for index, group in enumerate(balance_groups(images))]
    return sample_equally(groups, seed)


def evaluation_dataset(images: LabelledImages, image_size: int, batch_size: int,
                       normalization: str | Normalization = DEFAULT_NORMALIZATION) -> tf.data.Dataset:
    """Cached, ordered, prefetched batches for validation."""
    return image_dataset(images, image_size, normalization).cache().batch(batch_size).prefetch(tf.data.AUTOTUNE)
