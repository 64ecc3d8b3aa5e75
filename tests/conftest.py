"""Shared fixtures: a miniature copy (symlinks) of the data set and a tiny model trained on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cxr_pneumonia.config import DEFAULT_DATA_DIR

RSNA_DIR = DEFAULT_DATA_DIR.parent / "rsna_pneumonia"
TINY_TRAINING = ["--epochs", "2", "--image-size", "64", "--batch-size", "8", "--val-fraction", "0.3", "--seed", "7",
                 "--normalization", "equalize", "--label-smoothing", "0.1"]
MINI_RSNA_PER_CLASS = {"development": 5, "test": 2}

# A few patients per class: several images of one patient test the grouped split.
MINI_TRAIN = {
    "NORMAL": ["IM-0115-0001", "IM-0117-0001", "IM-0119-0001", "IM-0122-0001", "IM-0125-0001",
               "IM-0127-0001", "NORMAL2-IM-0383-0001", "NORMAL2-IM-0384-0001"],
    "PNEUMONIA": ["person1000_bacteria_2931", "person1000_virus_1681", "person1001_bacteria_2932",
                  "person1002_bacteria_2933", "person1003_bacteria_2934", "person1003_virus_1685",
                  "person1004_bacteria_2935", "person1005_bacteria_2936"],
}
MINI_TEST = {
    "NORMAL": ["IM-0001-0001", "IM-0003-0001", "IM-0005-0001", "IM-0006-0001"],
    "PNEUMONIA": ["person100_bacteria_475", "person100_bacteria_477", "person100_bacteria_478",
                  "person101_bacteria_483"],
}


@pytest.fixture(scope="session", autouse=True)
def hub_settings_of_a_clean_shell() -> Iterator[None]:
    """The tests run as from a clean shell, whatever the maintainer's HF_HUB_OFFLINE, HF_ENDPOINT and HF_TOKEN
    say: a test that needs one sets it itself (the Hub stand-in's tests need the client online)."""
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as patch:
        for name in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_TOKEN"):
            patch.delenv(name, raising=False)
        patch.setattr(constants, "HF_HUB_OFFLINE", False)  # huggingface_hub read the shell's value on import
        yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared Kermany data set beside the repository (CI provides it)."""
    if not (DEFAULT_DATA_DIR / "MANIFEST.csv").is_file():
        pytest.fail(f"the shared data set is missing at {DEFAULT_DATA_DIR}")
    return DEFAULT_DATA_DIR


@pytest.fixture(scope="session")
def mini_data_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and test/ folders of symlinks to a handful of real images, plus the manifest."""
    root = tmp_path_factory.mktemp("mini_chest_xray")
    for split, names_by_label in (("train", MINI_TRAIN), ("test", MINI_TEST)):
        for label, stems in names_by_label.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for stem in stems:
                (folder / f"{stem}.jpg").symlink_to(data_dir / split / label / f"{stem}.jpg")
    (root / "MANIFEST.csv").symlink_to(data_dir / "MANIFEST.csv")
    return root


@pytest.fixture(scope="session")
def mini_rsna_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder named rsna_pneumonia of symlinks to a few real RSNA images per class, some from its committed
    test split (so training/splits/rsna_pneumonia_test.csv applies), with the boxes file."""
    from training.data import read_test_split

    held_out = set(read_test_split(RSNA_DIR))
    root = tmp_path_factory.mktemp("mini_rsna") / "rsna_pneumonia"
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir(parents=True)
        files = sorted((RSNA_DIR / label).iterdir())
        test = [f for f in files if f"{label}/{f.name}" in held_out][: MINI_RSNA_PER_CLASS["test"]]
        development = [f for f in files if f"{label}/{f.name}" not in held_out][: MINI_RSNA_PER_CLASS["development"]]
        for file in test + development:
            (root / label / file.name).symlink_to(file)
    (root / "boxes.csv").symlink_to(RSNA_DIR / "boxes.csv")
    (root / "MANIFEST.csv").symlink_to(RSNA_DIR / "MANIFEST.csv")
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(mini_data_dir: Path, mini_rsna_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model directory from `python -m training.train` on the miniature children and adults sets."""
    from training import train

    out = tmp_path_factory.mktemp("tiny_model")
    train.main(["--data", str(mini_data_dir), str(mini_rsna_dir), "--out", str(out), *TINY_TRAINING])
    return out


@pytest.fixture
def hub():
    """A Hub-compatible HTTP server on 127.0.0.1, fresh for each test, with a fresh Hub HTTP client; online, as
    hub_settings_of_a_clean_shell leaves every test (the tests pass the endpoint themselves)."""
    from huggingface_hub import close_session

    from tests.hub_server import HubServer

    close_session()  # downloads abandoned by an earlier test must not share connections with this one
    with HubServer() as server:
        yield server


def model_copy_with_test_auc(source: Path, target: Path, auc: float) -> Path:
    """A copy of a model directory whose metrics (and card) claim `auc` on test: for version-order tests."""
    import json
    import shutil

    from training.card import write_card

    shutil.copytree(source, target)
    metrics = json.loads((target / "metrics.json").read_text())
    metrics["test"]["auc"] = auc
    (target / "metrics.json").write_text(json.dumps(metrics))
    write_card(target)
    return target


def bundled_config():
    """The bundled model's config (its version, threshold, band and stated prevalence), read as the app reads it."""
    import json

    from cxr_pneumonia.config import BUNDLED_MODEL_DIR, CONFIG_FILENAME
    from cxr_pneumonia.model import ModelConfig

    return ModelConfig.from_json(json.loads((BUNDLED_MODEL_DIR / CONFIG_FILENAME).read_text()))


BUNDLED = bundled_config()


def expected_at_prevalence(result: dict, prevalence: float) -> float | None:
    """What an analysis's probability at `prevalence` must be for the bundled model (None if it states none)."""
    import pytest

    from cxr_pneumonia.model import probability_at_prevalence

    if BUNDLED.calibrated_prevalence is None:
        return None
    return pytest.approx(probability_at_prevalence(result["pneumonia_probability"], prevalence,
                                                   BUNDLED.calibrated_prevalence))
