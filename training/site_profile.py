"""Fit a site profile on a folder of a hospital's X-rays, or measure how well such profiles hold.

    python -m training.site_profile --model model --data DIR --site NAME --out profile.json [--target 0.9]
    python -m training.site_profile --model model --stand-ins ../shared/data/chest_xray ../shared/data/rsna_pneumonia \
        --json runs/site_profiles.json

DIR holds NORMAL/ (required) and PNEUMONIA/ (optional), as the zip of "Your data" and POST /v1/calibrate do; the
profile is the same document they give (cxr_pneumonia.site_profile), to serve with SITE_PROFILE=profile.json.

--stand-ins: each change of cxr_pneumonia.acquisition at severity 2 applied to a test split stands for a site we do
not have. For each, the model's own threshold is measured beside profiles fitted on n = 30 and 60 of the site's
normal X-rays drawn at random and applied to the rest of its images (DRAWS draws; mean and 10th percentile).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cxr_pneumonia.acquisition import CHANGES
from cxr_pneumonia.config import DEFAULT_TARGET_SPECIFICITY, LABELS
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.model import PneumoniaModel, load_model_dir
from cxr_pneumonia.site_profile import ModelIdentity, ProfileError, order_statistic_threshold, profile_from_rows
from training.data import LabelledImages, concatenate, list_labelled_images, test_images
from training.evaluate import predict_and_gate_paths
from training.robustness import AS_IS, scores_under

DRAWS = 200
SIZES = (30, 60)
STAND_IN_SEVERITY = 2
DRAW_SEED = 28


def site_images(folder: Path) -> LabelledImages:
    """The X-rays of a site's folder: NORMAL/ required, PNEUMONIA/ optional."""
    if not (folder / LABELS[0]).is_dir():
        raise ProfileError(f"{folder} has no {LABELS[0]}/ folder: a site profile is fitted on normal X-rays.")
    if (folder / LABELS[1]).is_dir():
        return list_labelled_images(folder)
    paths = sorted(str(path) for path in (folder / LABELS[0]).iterdir() if path.is_file())
    return LabelledImages(paths, np.zeros(len(paths), dtype=np.int32), [folder.name] * len(paths))


def fit_folder(model: PneumoniaModel, folder: Path, site: str, target: float) -> dict:
    """The profile document of a site's folder."""
    images = site_images(folder)
    probabilities, refused = predict_and_gate_paths(model, images.paths)
    rows = [(LABELS[label], float(probability), bool(flag))
            for label, probability, flag in zip(images.labels, probabilities, refused, strict=True)]
    return profile_from_rows(site, ModelIdentity.of(model), target, rows).to_json()


def rates(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity at a threshold."""
    called = probabilities >= threshold
    return float(called[labels].mean()), float((~called[~labels]).mean())


def draws(labels: np.ndarray, probabilities: np.ndarray, accepted: np.ndarray, n: int, target: float,
          rng: np.random.Generator) -> list[tuple[float, float]]:
    """(sensitivity, specificity) on the rest of a site's images, for profiles fitted on n random accepted normals."""
    normals = np.flatnonzero(~labels & accepted)
    results = []
    for _ in range(DRAWS):
        chosen = rng.choice(normals, n, replace=False)
        threshold, _ = order_statistic_threshold(probabilities[chosen], target)
        rest = np.ones(len(labels), dtype=bool)
        rest[chosen] = False
        results.append(rates(labels[rest], probabilities[rest], threshold))
    return results


def stand_in_table(model: PneumoniaModel, images: LabelledImages, target: float) -> list[dict]:
    """One row per source and change (the images as they are first): the shipped threshold beside site profiles."""
    rows = []
    rng = np.random.default_rng(DRAW_SEED)
    with ThreadPoolExecutor(2) as pool:
        for source in images.source_names:
            of_source = images.of_source(source)
            labels = of_source.labels.astype(bool)
            grays = list(pool.map(read_image_file, of_source.paths))
            for change in (AS_IS, *CHANGES):
                probabilities, refused = scores_under(model, grays, change, STAND_IN_SEVERITY, pool)
                sensitivity, specificity = rates(labels, probabilities, model.config.threshold)
                row = {"source": source, "change": change, "n_normal": int((~labels).sum()),
                       "n_pneumonia": int(labels.sum()), "refused": float(refused.mean()),
                       "shipped": {"sensitivity": sensitivity, "specificity": specificity}}
                for n in SIZES:
                    if int((~labels & ~refused).sum()) < n + 1:  # the gate refused the site's normals
                        row[f"n{n}"] = None
                        continue
                    fitted = np.array(draws(labels, probabilities, ~refused, n, target, rng))
                    row[f"n{n}"] = {"sensitivity_mean": float(fitted[:, 0].mean()),
                                    "sensitivity_p10": float(np.percentile(fitted[:, 0], 10)),
                                    "specificity_mean": float(fitted[:, 1].mean()),
                                    "specificity_p10": float(np.percentile(fitted[:, 1], 10))}
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The stand-in sites as docs/model.md shows them: sensitivity / specificity, mean (10th percentile)."""
    def pair(block: dict | None) -> str:
        if block is None:
            return "none fitted: the input gate refused the normals"
        return (f"{block['sensitivity_mean']:.3f} ({block['sensitivity_p10']:.3f}) / "
                f"{block['specificity_mean']:.3f} ({block['specificity_p10']:.3f})")

    lines = ["| test split | change (severity 2) | refused | shipped threshold: sensitivity / specificity | "
             + " | ".join(f"profile on {n} normals: sensitivity / specificity, mean (10th percentile)" for n in SIZES)
             + " |", "|---|---|---:|---|" + "---|" * len(SIZES)]
    for row in rows:
        shipped = row["shipped"]
        lines.append(f"| {row['source']} | {row['change'].replace('_', ' ')} | {row['refused']:.0%} | "
                     f"{shipped['sensitivity']:.3f} / {shipped['specificity']:.3f} | "
                     + " | ".join(pair(row[f"n{n}"]) for n in SIZES) + " |")
    return "\n".join(lines)


def format_row(row: dict) -> str:
    if any(row[f"n{n}"] is None for n in SIZES):
        return f"{row['source']:>15} {row['change']:>16}  refused {row['refused']:.0%}: no profile fitted"
    fitted = "  ".join(f"n={n}: sens {row[f'n{n}']['sensitivity_mean']:.3f} ({row[f'n{n}']['sensitivity_p10']:.3f}) "
                       f"spec {row[f'n{n}']['specificity_mean']:.3f} ({row[f'n{n}']['specificity_p10']:.3f})"
                       for n in SIZES)
    shipped = row["shipped"]
    return (f"{row['source']:>15} {row['change']:>16}  shipped: sens {shipped['sensitivity']:.3f} "
            f"spec {shipped['specificity']:.3f}  {fitted}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a model directory")
    parser.add_argument("--target", type=float, default=DEFAULT_TARGET_SPECIFICITY, help="the target specificity")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--data", type=Path, help="the site's folder: NORMAL/ and optionally PNEUMONIA/")
    mode.add_argument("--stand-ins", type=Path, nargs="+", help="data sources whose test splits stand in for sites")
    parser.add_argument("--site", help="the site's name (at most 64 characters), with --data")
    parser.add_argument("--out", type=Path, help="where to write the profile, with --data")
    parser.add_argument("--json", type=Path, help="where to write the stand-ins' table")
    args = parser.parse_args(argv)
    model = load_model_dir(args.model)
    if args.data:
        if not args.site or not args.out:
            parser.error("--data needs --site and --out")
        try:
            profile = fit_folder(model, args.data, args.site, args.target)
        except ProfileError as error:
            parser.exit(2, f"error: {error}\n")
        args.out.write_text(json.dumps(profile, indent=2))
        print(json.dumps(profile, indent=2))
        return
    table = stand_in_table(model, concatenate([test_images(folder) for folder in args.stand_ins]), args.target)
    print(markdown_table(table))
    if args.json:
        args.json.write_text(json.dumps({"target": args.target, "draws": DRAWS, "severity": STAND_IN_SEVERITY,
                                         "version": model.config.extra.get("version"), "rows": table}, indent=1))


if __name__ == "__main__":
    main()
