"""A pool of changed copies of the training images, made once in worker processes, for the `sites` preset.

Changing every image afresh on each pass ran in tf.data's Python threads, one core at a time, and left an epoch
several times slower than the model's own work. Instead each training image gets POOL_VARIANTS draws of
cxr_pneumonia.acquisition.random_acquisition (about one in four leaves it as it is), preprocessed as the app
does, and each pass samples from them. The pool is cached on disk by its inputs, so runs that share training
images (the leave-one-source-out runs) share it. No TensorFlow here: the workers start fast.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from cxr_pneumonia.acquisition import random_acquisition
from cxr_pneumonia.explanation_quality import Box, box_mask
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.preprocessing import Normalization, as_normalization, prepare_input

POOL_VARIANTS = 4
POOL_WORKERS = 2
POOL_CACHE = Path(__file__).resolve().parent.parent / "runs" / "acquisition_pools"


def changed_copies(path: str, boxes: list[Box], image_size: int, normalization: str | Normalization, seed: int,
                   variants: int) -> np.ndarray:
    """`variants` changed copies of one image as uint8 (size, size, 2): the model input and the box mask, x 255."""
    from PIL import Image

    gray = read_image_file(path)
    mask = box_mask(boxes, gray.shape[1], gray.shape[0], gray.shape[1], gray.shape[0]).astype(np.float32)
    stacked = np.stack([gray, mask], axis=-1)
    copies = []
    for variant in range(variants):
        rng = np.random.default_rng([seed, int(hashlib.sha256(path.encode()).hexdigest()[:8], 16), variant])
        changed = random_acquisition(stacked, rng)
        model_input, field = prepare_input(changed[..., 0], image_size, normalization)
        model_input = model_input[..., 0]
        small_mask = np.asarray(Image.fromarray(field.crop(changed[..., 1]), mode="F").resize(
            (image_size, image_size), Image.Resampling.BILINEAR))
        copies.append(np.stack([model_input, small_mask], axis=-1))
    return np.round(np.clip(np.stack(copies), 0, 1) * 255).astype(np.uint8)


def _copies_of(job: tuple) -> np.ndarray:
    return changed_copies(*job)


def acquisition_pool(paths: list[str], boxes: dict[str, list[Box]], image_size: int,
                     normalization: str | Normalization, seed: int,
                     variants: int = POOL_VARIANTS, cache: Path | None = POOL_CACHE) -> dict[str, np.ndarray]:
    """Each path's changed copies (see changed_copies), made in POOL_WORKERS processes or read from the cache."""
    boxed = [[path, [[box.x, box.y, box.width, box.height] for box in boxes.get(Path(path).name, [])]]
             for path in sorted(paths)]
    normalization = as_normalization(normalization)
    named = [normalization.name, *normalization.band_energies]
    key = hashlib.sha256(json.dumps([boxed, image_size, named, seed, variants]).encode()).hexdigest()
    cached = None if cache is None else cache / f"{key[:16]}.npz"
    if cached is not None and cached.is_file():
        with np.load(cached) as stored:
            return dict(zip(json.loads(str(stored["paths"])), stored["copies"], strict=True))
    jobs = [(path, boxes.get(Path(path).name, []), image_size, normalization, seed, variants) for path in paths]
    with ProcessPoolExecutor(POOL_WORKERS, mp_context=get_context("spawn")) as pool:
        copies = np.stack(list(pool.map(_copies_of, jobs, chunksize=32)))
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, paths=json.dumps(paths), copies=copies)
    return dict(zip(paths, copies, strict=True))
