"""How long POST /v1/evaluate takes on a zip of 500 Kermany-sized JPEGs, against `python app.py` on 127.0.0.1
with the bundled model. Target: 20 s or less on a 2-core CPU.

    .venv/bin/python bench/evaluate.py --json bench/results/evaluate.json

The shared copy of Kermany's set is scaled down (512 pixels wide or less); its manifest keeps each image's
original size. The bench scales the first 250 training images of each class back up to that size (bicubic,
gray JPEG at quality 90: about 1.3 megapixels and 110 KB each, as the originals), so that reading them costs
what reading the originals would. The zip is built in a temporary directory; one small evaluation first builds
the model's graphs (not timed). The load average is recorded: other work on the two cores slows every figure.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report, start_app, wait_for_rest
from cxr_pneumonia.config import DEFAULT_DATA_DIR, LABELS


def build_zip(target: Path, per_class: int, data: Path = DEFAULT_DATA_DIR) -> Path:
    """`per_class` training JPEGs of each class at their original size, stored (JPEGs do not deflate) under CLASS/."""
    with (data / "MANIFEST.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "train"]
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for label in LABELS:
            for row in [row for row in rows if row["label"] == label][:per_class]:
                size = int(row["orig_width"]), int(row["orig_height"])
                archive.writestr(f"{label}/{row['filename']}",
                                 original_size_jpeg(data / "train" / label / row["filename"], size))
    return target


def original_size_jpeg(path: Path, size: tuple[int, int]) -> bytes:
    """The image scaled back to its original (width, height), as a gray JPEG."""
    buffer = io.BytesIO()
    Image.open(path).convert("L").resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def mean_megapixels(archive: Path) -> float:
    """The mean size of the zip's images, in megapixels."""
    with zipfile.ZipFile(archive) as opened:
        sizes = [Image.open(opened.open(info)).size for info in opened.infolist()]
    return round(sum(width * height for width, height in sizes) / len(sizes) / 1e6, 2)


def evaluate(url: str, body: bytes) -> tuple[float, dict]:
    """Seconds for one evaluation over HTTP, and its answer."""
    started = time.perf_counter()
    response = httpx.post(f"{url}v1/evaluate", content=body, headers={"Content-Type": "application/zip"},
                          timeout=600)
    seconds = time.perf_counter() - started
    return seconds, response.raise_for_status().json()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500, help="images in the zip, half per class")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        archive = build_zip(Path(folder) / "kermany.zip", args.images // 2)
        warm = build_zip(Path(folder) / "warm.zip", 16)
        body, megapixels = archive.read_bytes(), mean_megapixels(archive)
        with start_app() as app:
            wait_for_rest(app)
            evaluate(app.url, warm.read_bytes())
            load_before = os.getloadavg()
            runs = [evaluate(app.url, body) for _ in range(args.repeats)]
            load_after = os.getloadavg()
            peak = app.peak_memory_mb()
    seconds = [round(run[0], 2) for run in runs]
    answer = runs[0][1]
    report({"images": answer["n"], "zip_mb": round(len(body) / 1e6, 1),
            "mean_megapixels": megapixels, "seconds": seconds,
            "best_seconds": min(seconds), "median_seconds": sorted(seconds)[len(seconds) // 2],
            "images_per_second": round(answer["n"] / min(seconds), 1), "app_peak_memory_mb": round(peak),
            "load_average_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            "cpus": os.cpu_count(), "accuracy": answer["accuracy"], "n_unreadable": answer["n_unreadable"]},
           args.json)


if __name__ == "__main__":
    main()
