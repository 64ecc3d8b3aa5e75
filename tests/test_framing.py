"""The framing shortcut: the 'framing' augmentation and the framing check."""

import json

import numpy as np
import pytest

from cxr_pneumonia.imaging import read_image_file
from training import framing_check
from training.augment import build_augmenter
from training.data import validation_images


def block_heights(preset: str) -> np.ndarray:
    """Height over width of a centred bright square after the preset's augmentation, per image."""
    batch = np.zeros((32, 64, 64, 1), np.float32)
    batch[:, 20:44, 20:44] = 1.0
    out = np.asarray(build_augmenter(preset, seed=3)(batch, training=True))[..., 0]
    bright = out > 0.5 * out.max(axis=(1, 2), keepdims=True)
    return bright.any(axis=2).sum(axis=1) / bright.any(axis=1).sum(axis=1)


def test_framing_preset_crops_height_apart_from_width_and_anatomical_does_not():
    kept = block_heights("anatomical")
    varied = block_heights("framing")
    assert np.abs(kept - 1).max() < 0.2
    assert varied.max() > 1.3 and varied.max() / varied.min() > 1.4


def test_vertical_crop_of_a_real_image_cuts_top_and_bottom_only(mini_data_dir):
    gray = read_image_file(next((mini_data_dir / "test" / "NORMAL").iterdir()))
    cropped = framing_check.cropped_vertically(gray, 0.125)
    cut = int(gray.shape[0] * 0.125)
    assert cropped.shape == (gray.shape[0] - 2 * cut, gray.shape[1])
    np.testing.assert_array_equal(cropped, gray[cut:-cut])
    with pytest.raises(ValueError):
        framing_check.cropped_vertically(gray, 0.5)


def test_framing_check_reports_each_crop_on_the_validation_split(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "framing.json"
    framing_check.main(["--model", str(tiny_model_dir), "--crops", "0", "0.2", "--json", str(out)])
    rows = json.loads(out.read_text())
    validation = validation_images(tiny_model_dir)
    assert [row["crop_top_and_bottom"] for row in rows] == [0.0, 0.2]
    for row in rows:
        assert row["n_normal"] + row["n_pneumonia"] == len(validation)
        assert 0.0 <= row["normal_called_pneumonia"] <= 1.0 and 0.0 <= row["sensitivity"] <= 1.0
    assert "crop 20.0% top and bottom" in capsys.readouterr().out
