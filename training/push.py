"""Publish a model directory to the Hub as one commit tagged with its version.

    HF_TOKEN=... python -m training.push --model model --repo-id someone/cxr-model --version v1.2.0
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from huggingface_hub.errors import RepositoryNotFoundError

from cxr_pneumonia.config import CARD_FILENAME, CONFIG_FILENAME, METRICS_FILENAME
from cxr_pneumonia.hub import (
    SEMVER_TAG,
    HubSettings,
    card_test_metrics,
    list_versions,
    publish_model_dir,
)
from cxr_pneumonia.model import load_model_dir

REQUIRED_CONFIG_KEYS = ("labels", "image_size", "threshold", "temperature", "preprocessing", "gradcam_layer")


class PushRefused(RuntimeError):
    """A push that must not happen; the message says why."""


def validate_model_dir(folder: Path) -> dict:
    """Load the model with safe_mode, run one prediction, check config, metrics and card; return test metrics."""
    model = load_model_dir(folder)
    probability = model.predict(np.linspace(0, 1, 256 * 256, dtype=np.float32).reshape(256, 256)).pneumonia_probability
    if not 0.0 <= probability <= 1.0:
        raise PushRefused(f"the model predicted {probability}, not a probability")
    config = json.loads((folder / CONFIG_FILENAME).read_text())
    missing = [key for key in REQUIRED_CONFIG_KEYS if key not in config]
    if missing:
        raise PushRefused(f"{CONFIG_FILENAME} lacks {', '.join(missing)}")
    metrics_path, card_path = folder / METRICS_FILENAME, folder / CARD_FILENAME
    if not metrics_path.is_file() or "auc" not in json.loads(metrics_path.read_text()).get("test", {}):
        raise PushRefused(f"{METRICS_FILENAME} with test metrics is missing")
    card = card_path.read_text() if card_path.is_file() else ""
    if not card.startswith("---\n") or "model-index" not in card:
        raise PushRefused(f"{CARD_FILENAME} (the model card with Hub metadata) is missing or has no model-index")
    return json.loads(metrics_path.read_text())["test"]


def check_version_order(settings: HubSettings, version: str, test_auc: float, allow_regression: bool) -> None:
    """Refuse an existing tag, and a test AUC below the latest version's unless allowed."""
    try:
        versions = list_versions(settings)
    except RepositoryNotFoundError:
        versions = []  # the first push creates the repo
    if any(existing.tag == version for existing in versions):
        raise PushRefused(f"version {version} already exists on {settings.repo_id}; versions are immutable")
    if versions and not allow_regression:
        latest = versions[0].tag
        latest_auc = card_test_metrics(settings, latest).get("roc_auc")
        if latest_auc is not None and test_auc < latest_auc:
            raise PushRefused(
                f"test AUC {test_auc:.4f} is below {latest}'s {latest_auc:.4f}; "
                "pass --allow-regression to publish anyway"
            )


def staged_copy(folder: Path, version: str, staging: Path) -> Path:
    """A copy of the model directory whose config.json records the version."""
    target = staging / "model"
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    config = json.loads((target / CONFIG_FILENAME).read_text())
    config["version"] = version
    (target / CONFIG_FILENAME).write_text(json.dumps(config, indent=2))
    return target


def commit_message(version: str, test: dict) -> str:
    """Commit message naming the version and its test metrics."""
    return (f"{version}: test accuracy {test['accuracy']:.4f}, AUC {test['auc']:.4f}, "
            f"sensitivity {test['sensitivity']:.4f}, specificity {test['specificity']:.4f} (n={test['n']})")


def push(folder: Path, settings: HubSettings, version: str, private: bool, dry_run: bool,
         allow_regression: bool) -> None:
    """Validate, check the version order, then publish in one commit and tag it."""
    if not SEMVER_TAG.match(version):
        raise PushRefused(f"version {version!r} is not of the form vX.Y.Z")
    test = validate_model_dir(folder)
    message = commit_message(version, test)
    check_version_order(settings, version, test["auc"], allow_regression)
    if dry_run:
        print(f"dry run: would publish {folder} to {settings.repo_id} as {version}\n  {message}")
        return
    with tempfile.TemporaryDirectory() as staging:
        published = publish_model_dir(settings, staged_copy(folder, version, Path(staging)), version, message, private)
    print(f"published {settings.repo_id} {published.tag} -> commit {published.commit}\n{published.commit_url}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model directory to publish")
    parser.add_argument("--repo-id", required=True)
    parser.add_argument("--version", required=True, help="tag vX.Y.Z")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--dry-run", action="store_true", help="validate and check, upload nothing")
    parser.add_argument("--allow-regression", action="store_true", help="publish even if test AUC dropped")
    args = parser.parse_args(argv)
    settings = replace(HubSettings.from_environment(), repo_id=args.repo_id)
    try:
        push(args.model, settings, args.version, args.private, args.dry_run, args.allow_regression)
    except PushRefused as refusal:
        sys.exit(f"refused: {refusal}")


if __name__ == "__main__":
    main()
