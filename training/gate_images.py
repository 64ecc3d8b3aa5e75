"""The images the input gate is fitted on besides chest X-rays as they are (see training.gate): the changes of
acquisition its positives see (AUGMENTATION), and its classifier's negatives (NEGATIVES): other radiographs from a
folder of categories, chest X-rays turned or cut down, and synthetic pictures that are not X-rays, all read as
model inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter

from cxr_pneumonia.acquisition import CHANGES, apply_change
from cxr_pneumonia.gate import FRONTAL_CHEST
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.preprocessing import Normalization, to_model_input
from training.data import IMAGE_SUFFIXES

# The classifier's classes: the frontal chest X-ray it passes, then what it refuses.
CLASSES = (FRONTAL_CHEST, "lateral_chest", "other_body_part", "turned_chest", "part_of_chest", "not_xray")
# Folders of --negatives that hold another class than other_body_part.
CATEGORY_CLASSES = {"chest_lateral": "lateral_chest"}
NEGATIVE_COPIES = 4  # changed copies of each negative radiograph, beside the image as it is
MAX_SYNTHETIC_PER_CLASS = 600  # turned, cut-down and not-X-ray examples (never more than the positives)
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
READERS = 2  # the preprocessing (scipy's filters, PIL's resizing) runs outside the GIL for the most part


def read_inputs(paths: list[str], image_size: int, normalization: str | Normalization,
                changes: dict[str, Change | None], seed: int) -> dict[str, np.ndarray]:
    """Model inputs of each image under each named change (None: as it is), reading every file once, in READERS
    threads; each image's changes draw from its own generator, so the result does not depend on their order."""

    def read(item: tuple[int, str]) -> list[np.ndarray]:
        index, path = item
        rng = np.random.default_rng([seed, index])
        gray = read_image_file(path)
        return [to_model_input(gray if change is None else np.asarray(change(gray, rng), dtype=np.float32),
                               image_size, normalization) for change in changes.values()]

    with ThreadPoolExecutor(READERS) as pool:
        rows = list(pool.map(read, enumerate(paths)))
    return {name: _stack([row[column] for row in rows], image_size) for column, name in enumerate(changes)}


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


def folder_negatives(negatives_dir: Path, image_size: int, normalization: str | Normalization, seed: int) -> Negatives:
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


def synthetic_negatives(chest_paths: list[str], image_size: int, normalization: str | Normalization,
                        seed: int) -> Negatives:
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
