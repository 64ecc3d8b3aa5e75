"""How often the input gate refuses images that are not chest X-rays, and chest X-rays that look unusual.

    .venv/bin/python bench/gate_check.py --model runs/cxr_cnn_128 --json bench/results/gate_check.json

Radiographs that are not frontal chest X-rays are the shared other_radiographs set (--radiographs), counted
per category folder; a gate whose classifier was trained on that set refuses them in-sample, so the gate's own
leave-one-category-out numbers (its config.json, printed here too) are the honest ones for those categories.

Images that are not chest X-rays come from what is installed here: matplotlib's sample data, pydicom's test
files and, if installed, scikit-image's bundled images (`pip install scikit-image`: a source of images for
this benchmark only, not a dependency; the numbers in the report were measured with 0.26.0). Each source image counts
as-is and as crops, flips, rotations and gamma changes. Chest X-rays "from another hospital" are test
images of each source changed the way another site's images may differ (framing, borders, rotation, exposure, edge
enhancement, markers, JPEG recompression, noise, 16-bit PNG, MONOCHROME1 DICOM). Several of those changes
resemble the ones the gate was fitted with (LIKE_FIT_CHANGES), so they are pooled apart from the others.
Generated files live in a temporary folder that is deleted at the end. The gate's verdict rule was fitted on
validation images; nothing here sets it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib
import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from cxr_pneumonia.config import BUNDLED_MODEL_DIR, DATA_ROOT
from cxr_pneumonia.imaging import ImageDecodeError, read_image_file
from cxr_pneumonia.model import PneumoniaModel, load_model_dir
from cxr_pneumonia.sources import SOURCES as DATA_SOURCES
from tests.dicom_files import dicom
from training.data import has_official_split, list_labelled_images, test_images
from training.evaluate import folder_reports, gate_report
from training.gate import DEFAULT_NEGATIVES_DIR, category_table
from training.gate_images import bars, border, rotate

MATPLOTLIB_DATA = Path(matplotlib.get_data_path()) / "sample_data"
PYDICOM_DATA = Path(pydicom.__file__).parent / "data" / "test_files"
# (group, library, file name): library is "matplotlib", "pydicom" or "skimage".
SOURCES = [
    *[("photos", "matplotlib", name) for name in ("grace_hopper.jpg",)],
    *[("photos", "skimage", name) for name in (
        "astronaut.png", "camera.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
        "coins.png", "moon.png", "clock_motion.png", "hubble_deep_field.jpg")],
    *[("other_pictures", "matplotlib", name) for name in ("Minduka_Present_Blue_Pack.png", "logo2.png")],
    *[("other_pictures", "skimage", name) for name in (
        "brick.png", "grass.png", "gravel.png", "page.png", "text.png", "logo.png", "color.png", "horse.png",
        "chessboard_GRAY.png", "cell.png", "ihc.png", "retina.jpg", "microaneurysms.png")],
    *[("mri", "matplotlib", "s1045.ima.gz")],
    *[("mri", "pydicom", name) for name in ("MR_small.dcm", "examples_overlay.dcm")],
    *[("ct", "pydicom", name) for name in ("CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm")],
    *[("ct", "skimage", "phantom.png")],
    *[("other_medical", "pydicom", name) for name in ("examples_jpeg2k.dcm", "examples_ybr_color.dcm", "JPEG2000.dcm")],
]
MIN_VARIANT_SIDE = 192
DEFAULT_SOURCES = [DATA_ROOT / name for name in DATA_SOURCES]


def source_path(library: str, name: str) -> Path | None:
    """Where a source image is installed, or None when its library or file is not here."""
    if library == "matplotlib":
        path = MATPLOTLIB_DATA / name
    elif library == "pydicom":
        path = PYDICOM_DATA / name
    else:
        try:
            import skimage
        except ImportError:
            return None
        path = Path(skimage.__file__).parent / "data" / name
    return path if path.is_file() else None


def readable_source(path: Path, folder: Path) -> Path:
    """The source as a file the app's decoder reads (the raw big-endian MRI slice becomes a 16-bit PNG)."""
    if path.name != "s1045.ima.gz":
        return path
    pixels = np.frombuffer(gzip.decompress(path.read_bytes()), dtype=">u2").reshape(256, 256)
    png = folder / "s1045_mri.png"
    Image.fromarray(pixels.astype(np.uint16)).save(png)
    return png


def variants(gray: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Flips, rotations, crops and gamma changes of a decoded grayscale image."""
    if min(gray.shape) < MIN_VARIANT_SIDE:
        factor = MIN_VARIANT_SIDE / min(gray.shape)
        size = (round(gray.shape[1] * factor), round(gray.shape[0] * factor))
        gray = np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.Resampling.BILINEAR))
    h, w = gray.shape
    crops = {}
    for index in range(3):
        ch, cw = int(h * rng.uniform(0.6, 0.9)), int(w * rng.uniform(0.6, 0.9))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crops[f"crop{index}"] = gray[top : top + ch, left : left + cw]
    return {"flip": gray[:, ::-1], "rot90": np.rot90(gray), "rot180": gray[::-1, ::-1], **crops,
            "gamma0.5": gray**0.5, "gamma2": gray**2}


def build_other_images(folder: Path, seed: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Image files per group (each source and its variants), and the sources used per group."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    used: dict[str, list[str]] = {}
    for group, library, name in SOURCES:
        path = source_path(library, name)
        if path is None:
            continue
        target = folder / group
        target.mkdir(parents=True, exist_ok=True)
        readable = readable_source(path, target)
        files = [str(readable)]
        try:
            gray = read_image_file(readable)
        except ImageDecodeError:
            gray = None  # counted once, as refused by the decoder
        if gray is not None:
            for variant, pixels in variants(gray, rng).items():
                out = target / f"{Path(name).stem}_{variant}.png"
                save_png16(pixels, out)
                files.append(str(out))
        groups.setdefault(group, []).extend(files)
        used.setdefault(group, []).append(f"{library}:{name}")
    return groups, used


def save_png8(gray: np.ndarray, path: Path) -> None:
    Image.fromarray((np.clip(gray, 0, 1) * 255).round().astype(np.uint8)).save(path)


def save_png16(gray: np.ndarray, path: Path) -> None:
    Image.fromarray((np.clip(gray, 0, 1) * 65535).round().astype(np.uint16)).save(path)


def save_jpeg(gray: np.ndarray, path: Path, quality: int = 25) -> None:
    Image.fromarray((np.clip(gray, 0, 1) * 255).round().astype(np.uint8)).save(path, quality=quality)


def save_dicom_monochrome1(gray: np.ndarray, path: Path) -> None:
    """A 12-bit MONOCHROME1 DICOM (bright = low value), as many CR/DX systems write."""
    inverted = ((1.0 - np.clip(gray, 0, 1)) * 4095).round().astype(np.uint16)
    path.write_bytes(dicom(inverted, "MONOCHROME1", bits=12))


def centre_crop(gray: np.ndarray, share: float) -> np.ndarray:
    h, w = gray.shape
    top, left = int(h * (1 - share) / 2), int(w * (1 - share) / 2)
    return gray[top : h - top, left : w - left]


def thorax_crop(gray: np.ndarray) -> np.ndarray:
    """Rows 5-75 % and columns 10-90 %: the tight framing of an adult chest film, without arms and abdomen."""
    h, w = gray.shape
    return gray[int(0.05 * h) : int(0.75 * h), int(0.1 * w) : int(0.9 * w)]


def shift(gray: np.ndarray, share: float = 0.1) -> np.ndarray:
    """The image moved right by `share` of its width, black coming in on the left."""
    pad = int(gray.shape[1] * share)
    return np.pad(gray, ((0, 0), (pad, 0)))[:, : gray.shape[1]]


def squash(gray: np.ndarray, factor: float = 1.3) -> np.ndarray:
    """The image stretched to `factor` times its width."""
    size = (round(gray.shape[1] * factor), gray.shape[0])
    return np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.Resampling.BILINEAR))


def text_marker(gray: np.ndarray) -> np.ndarray:
    """A burned-in white side marker and a line of text, as many sites print on their films."""
    image = Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    size = max(12, gray.shape[0] // 12)
    font = ImageFont.load_default(size=size)
    draw.text((gray.shape[1] // 20, gray.shape[0] // 20), "R", fill=255, font=font)
    draw.text((gray.shape[1] // 2, gray.shape[0] - 2 * size), "PORTABLE AP", fill=255,
              font=ImageFont.load_default(size=size // 2))
    return np.asarray(image, dtype=np.float32) / 255


def unsharp(gray: np.ndarray) -> np.ndarray:
    """Edge enhancement, as computed-radiography consoles apply."""
    image = Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.UnsharpMask(radius=8, percent=150)), dtype=np.float32) / 255


def equalize(gray: np.ndarray) -> np.ndarray:
    image = Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8))
    return np.asarray(ImageOps.equalize(image), dtype=np.float32) / 255


def collimated(gray: np.ndarray, share: float = 0.08) -> np.ndarray:
    """White (unexposed) bands at the top and bottom, as a collimator leaves them."""
    out = gray.copy()
    band = int(gray.shape[0] * share)
    out[:band], out[-band:] = 1.0, 1.0
    return out


def downsampled(gray: np.ndarray, side: int = 256) -> np.ndarray:
    """A small copy, longer side `side`, as a web or PACS thumbnail export."""
    factor = side / max(gray.shape)
    size = (max(1, round(gray.shape[1] * factor)), max(1, round(gray.shape[0] * factor)))
    return np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.Resampling.LANCZOS))


def add_noise(gray: np.ndarray, sigma: float = 0.03, seed: int = 0) -> np.ndarray:
    return np.clip(gray + np.random.default_rng(seed).normal(0, sigma, gray.shape), 0, 1).astype(np.float32)


# name: (change of the decoded image, writer and file suffix). The first group resembles the changes the
# gate was fitted with (training.gate_images.AUGMENTATION); the second group was not used in fitting.
LIKE_FIT_CHANGES = ("gamma_0.6", "gamma_1.6", "black_side_bars", "white_side_bars", "rotate_+8", "rotate_-8",
                    "crop_85", "zoom_out_130", "thorax_crop", "unsharp_mask", "collimated")
TRANSFORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray, Path], None], str]] = {
    "gamma_0.6": (lambda g: g**0.6, save_png8, ".png"),
    "gamma_1.6": (lambda g: g**1.6, save_png8, ".png"),
    "black_side_bars": (lambda g: bars(g, 0.15, 0.0), save_png8, ".png"),
    "white_side_bars": (lambda g: bars(g, 0.08, 1.0), save_png8, ".png"),
    "rotate_+8": (lambda g: rotate(g, 8), save_png8, ".png"),
    "rotate_-8": (lambda g: rotate(g, -8), save_png8, ".png"),
    "crop_85": (lambda g: centre_crop(g, 0.85), save_png8, ".png"),
    "zoom_out_130": (lambda g: border(g, 0.15, 0.05), save_png8, ".png"),
    "low_contrast": (lambda g: 0.3 + 0.4 * g, save_png8, ".png"),
    "thorax_crop": (thorax_crop, save_png8, ".png"),
    "shift_10": (shift, save_png8, ".png"),
    "stretched_130": (squash, save_png8, ".png"),
    "text_marker": (text_marker, save_png8, ".png"),
    "unsharp_mask": (unsharp, save_png8, ".png"),
    "equalized": (equalize, save_png8, ".png"),
    "collimated": (collimated, save_png8, ".png"),
    "downsampled_256": (downsampled, save_png8, ".png"),
    "jpeg_q25": (lambda g: g, save_jpeg, ".jpg"),
    "noise_0.03": (add_noise, save_png8, ".png"),
    "png_16bit": (lambda g: g, save_png16, ".png"),
    "dicom_monochrome1": (lambda g: g, save_dicom_monochrome1, ".dcm"),
}


def build_transformed_cxr(folder: Path, paths: list[str]) -> dict[str, list[str]]:
    """Each transform applied to each chest X-ray, as files per transform."""
    files: dict[str, list[str]] = {name: [] for name in TRANSFORMS}
    for path in paths:
        gray = read_image_file(path)
        for name, (change, write, suffix) in TRANSFORMS.items():
            target = folder / "transformed_cxr" / name
            target.mkdir(parents=True, exist_ok=True)
            out = target / f"{Path(path).stem}{suffix}"
            write(np.asarray(change(gray), dtype=np.float32), out)
            files[name].append(str(out))
    return files


def refusals(model: PneumoniaModel, files: dict[str, list[str]]) -> dict[str, dict]:
    """The gate report (counts and refused fractions) of each group of files."""
    return {name: gate_report(model, paths) for name, paths in files.items()}


def pooled(reports: dict[str, dict]) -> dict:
    """The counts of several groups added up, and their refused fraction."""
    total = {key: sum(report[key] for report in reports.values())
             for key in ("n", "n_refused_by_decoder", "n_refused_by_gate")}
    scores = [report["n_refused_above_base_by_score"] for report in reports.values()]
    total["n_refused_above_base_by_score"] = {name: sum(counts[name] for counts in scores) for name in scores[0]}
    told = [report.get("n_refused_by_kind_told", {}) for report in reports.values()]
    total["n_refused_by_kind_told"] = {kind: sum(counts.get(kind, 0) for counts in told)
                                       for kind in sorted({kind for counts in told for kind in counts})}
    refused = total["n_refused_by_decoder"] + total["n_refused_by_gate"]
    return {**total, "rejected_fraction": refused / total["n"] if total["n"] else 0.0}


def run(model_dir: Path, data_dirs: list[Path], radiographs: Path, n_cxr: int, seed: int) -> dict:
    """Build every set in a temporary folder and measure the gate on it."""
    model = load_model_dir(model_dir)
    if not model.gate.present:
        raise SystemExit(f"{model_dir} has no input gate: fit one with python -m training.gate")
    tests = {Path(data_dir).name: test_images(data_dir) for data_dir in data_dirs}
    sample = sorted(path for test in tests.values() for path in
                    np.random.default_rng(seed).choice(test.paths, size=min(n_cxr, len(test)), replace=False))
    with tempfile.TemporaryDirectory(prefix="gate_check_") as temporary:
        others, sources = build_other_images(Path(temporary), seed)
        other_reports = refusals(model, others)
        transformed = refusals(model, build_transformed_cxr(Path(temporary), list(sample)))
    like_fit = {name: report for name, report in transformed.items() if name in LIKE_FIT_CHANGES}
    held_out = {name: report for name, report in transformed.items() if name not in LIKE_FIT_CHANGES}
    whole = {Path(d).name: gate_report(model, list_labelled_images(d).paths)
             for d in data_dirs if not has_official_split(d)}
    return {
        "model": str(model_dir),
        "verdict_rule": model.gate.rule.to_json(),
        "other_radiographs": folder_reports(model, radiographs),
        "other_radiographs_left_out_in_fit": model.config.gate.get("negatives"),
        "not_chest_xray": {**other_reports, "all": pooled(other_reports)},
        "sources": sources,
        "transformed_test_cxr": {**transformed, "all": pooled(transformed), "like_fit_changes": pooled(like_fit),
                                 "changes_not_used_in_fit": pooled(held_out)},
        "transformed_test_cxr_sample": len(sample),
        "official_test": {name: gate_report(model, test.paths) for name, test in tests.items()},
        "all_images_training_included": whole,
    }


def summary_lines(result: dict) -> list[str]:
    """One line per group: refused share and counts, and how many of the refused each score found unusual."""
    radiographs = result["other_radiographs"]
    sections = [("other_radiographs", name, report) for name, report in radiographs["by_folder"].items()]
    sections.append(("other_radiographs", "all", radiographs))
    sections += [(section, name, report) for section in ("not_chest_xray", "transformed_test_cxr")
                 for name, report in result[section].items()]
    sections += [(section, name, report) for section in ("official_test", "all_images_training_included")
                 for name, report in result[section].items()]
    lines = []
    for section, name, report in sections:
        refused = report["n_refused_by_decoder"] + report["n_refused_by_gate"]
        above = ", ".join(f"{score} {count}" for score, count in report["n_refused_above_base_by_score"].items())
        lines.append(f"{section:28s} {name:23s} refused {report['rejected_fraction']:6.1%} ({refused:4d}/"
                     f"{report['n']:4d}); unreadable {report['n_refused_by_decoder']}; above base: {above}")
    if result["other_radiographs_left_out_in_fit"]:
        lines.append(category_table({"negatives": result["other_radiographs_left_out_in_fit"]}))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL_DIR)
    parser.add_argument("--data", type=Path, nargs="+", default=DEFAULT_SOURCES,
                        help="chest X-ray data sets whose test splits must pass (test/ or a training/splits file)")
    parser.add_argument("--radiographs", type=Path, default=DEFAULT_NEGATIVES_DIR,
                        help="radiographs that are not frontal chest X-rays, one folder per category")
    parser.add_argument("--n-cxr", type=int, default=120, help="test images of each source to transform")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    result = run(args.model, args.data, args.radiographs, args.n_cxr, args.seed)
    print("\n".join(summary_lines(result)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
