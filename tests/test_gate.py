"""The input gate: fitting on chest X-rays alone, storage with the model, refusals in the service, the
evaluation command and the app. The tiny test model is barely trained, so these tests check the
mechanics (and that images far outside refuse), not how well the gate separates real-world images."""

import importlib
import json
import shutil
import sys

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from cxr_pneumonia import hub
from cxr_pneumonia.explain import Explainer
from cxr_pneumonia.gate import (
    ABSENT_MESSAGE,
    GATE_FILENAME,
    SCORE_NAMES,
    GateStatistics,
)
from cxr_pneumonia.hub import HubSettings, ModelLocation
from cxr_pneumonia.model import load_model_dir
from cxr_pneumonia.service import PneumoniaService
from tests.test_app import closed_port
from training import evaluate
from training import gate as gate_training
from training.data import validation_images


@pytest.fixture(scope="module")
def far_outside(tmp_path_factory) -> dict:
    """Images nothing like a chest X-ray, refused even by the barely trained test model: stripes and a
    checkerboard (uniform noise is not among them: 2x2-averaged thumbnails of noise are smooth enough to
    pass the tiny model's loose thumbnail limit, and its features are barely trained)."""
    folder = tmp_path_factory.mktemp("not_cxr")
    stripes, board = folder / "stripes.png", folder / "checkerboard.png"
    Image.fromarray(((np.arange(256)[None, :] // 16 % 2) * np.full((256, 1), 255)).astype(np.uint8)).save(stripes)
    squares = (np.indices((256, 256)) // 32).sum(axis=0) % 2
    Image.fromarray((squares * 255).astype(np.uint8)).save(board)
    return {"stripes": stripes, "checkerboard": board}


@pytest.fixture(scope="module")
def passing_image(tiny_model_dir):
    """A validation chest X-ray: the thresholds refuse none of them on the tiny model."""
    return validation_images(tiny_model_dir).paths[0]


def test_training_fits_a_gate_into_the_model_directory(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    block = config["gate"]
    assert (tiny_model_dir / GATE_FILENAME).is_file() and block["file"] == GATE_FILENAME
    assert set(block["thresholds"]) == set(SCORE_NAMES) and block["feature_layers"] == ["stage2_pool", "stage3_pool", "pool"]
    assert "Mahalanobis" in block["method"] and block["validation_refused_fraction"] <= 0.01
    assert load_model_dir(tiny_model_dir).gate.present


def test_gate_round_trips_through_npz_without_pickle(tiny_model_dir, tmp_path):
    statistics = GateStatistics.load(tiny_model_dir / GATE_FILENAME)
    statistics.save(tmp_path / GATE_FILENAME)
    again = GateStatistics.load(tmp_path / GATE_FILENAME)
    for key in ("feature_mean", "feature_precision", "thumbnail_mean", "thumbnail_components"):
        assert np.array_equal(getattr(statistics, key), getattr(again, key))
    components = statistics.thumbnail_components
    assert np.allclose(components @ components.T, np.eye(len(components)), atol=1e-6)


def test_thresholds_are_quantiles_of_validation_scores(tiny_model_dir):
    model = load_model_dir(tiny_model_dir)
    block = model.config.gate
    validation = validation_images(tiny_model_dir)
    plain, changed = gate_training.inputs_with_changes(validation.paths, model.config.image_size, block["seed"] + 1)
    scores = model.gate.scores(np.concatenate([plain, changed]))
    for name in SCORE_NAMES:
        assert block["thresholds"][name] == pytest.approx(np.quantile(scores[name], block["quantile"]))
    assert model.gate.refused(np.concatenate([plain, changed])).mean() <= 0.01
    assert model.gate.refused(plain).mean() == block["validation_refused_fraction"]


def test_refit_from_the_command_line_on_fewer_images(tiny_model_dir, mini_data_dir, tmp_path, capsys):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    gate_training.main(["--model", str(copy), "--data", str(mini_data_dir), "--max-images", "6", "--seed", "3"])
    block = json.loads((copy / "config.json").read_text())["gate"]
    assert block["n_fit_images"] == 6 and block["seed"] == 3 and block["pca_components"] < 12  # 6 images, each also changed once
    assert "thresholds" in capsys.readouterr().out


def test_choose_thresholds_refuses_at_most_the_allowed_share():
    rng = np.random.default_rng(0)
    scores = {"feature_distance": rng.normal(size=1000), "reconstruction_error": rng.normal(size=1000)}
    thresholds, level = gate_training.choose_thresholds(scores, 0.01)
    refused = (scores["feature_distance"] > thresholds["feature_distance"]) | (
        scores["reconstruction_error"] > thresholds["reconstruction_error"])
    assert 0.005 < refused.mean() <= 0.01 and level >= 0.995
    assert thresholds["feature_distance"] == pytest.approx(np.quantile(scores["feature_distance"], level))


def test_ledoit_wolf_shrinks_isotropic_noise_and_keeps_strong_structure():
    rng = np.random.default_rng(0)
    isotropic = rng.normal(size=(40, 20))
    _, shrinkage = gate_training.ledoit_wolf(isotropic - isotropic.mean(axis=0))
    assert shrinkage > 0.5
    correlated = rng.normal(size=(2000, 1)) * np.ones((1, 20)) + 0.1 * rng.normal(size=(2000, 20))
    covariance, shrinkage = gate_training.ledoit_wolf(correlated - correlated.mean(axis=0))
    assert shrinkage < 0.05 and np.all(np.linalg.eigvalsh(covariance) > 0)


def test_a_model_without_gate_passes_everything_and_says_so(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    config = json.loads((copy / "config.json").read_text())
    del config["gate"]
    (copy / "config.json").write_text(json.dumps(config))
    (copy / GATE_FILENAME).unlink()
    model = load_model_dir(copy)
    assert not model.gate.present
    result = model.gate.check(np.zeros((model.config.image_size,) * 2 + (1,), np.float32))
    assert result.passed and not result.checked and result.message == ABSENT_MESSAGE


def test_a_gate_block_without_its_arrays_fails_loudly(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (copy / GATE_FILENAME).unlink()
    with pytest.raises(FileNotFoundError, match=GATE_FILENAME):
        load_model_dir(copy)


@pytest.fixture(scope="module")
def service(tiny_model_dir):
    """The service serving the tiny gated model as if it were the bundled one."""
    patch = pytest.MonkeyPatch()
    location = ModelLocation(tiny_model_dir, "bundled", "test/tiny", "bundled", fallback_reason="testing")
    patch.setattr("cxr_pneumonia.service.resolve_model", lambda settings, revision=None: location)
    yield PneumoniaService(HubSettings(offline=True))
    patch.undo()


@pytest.mark.parametrize("name", ["stripes", "checkerboard"])
def test_service_refuses_an_image_far_outside_without_probability(service, far_outside, name):
    analysis = service.analyze_file(far_outside[name])
    assert analysis.refused and analysis.prediction is None
    assert analysis.heatmap is None and analysis.overlay is None and analysis.original.ndim == 2
    assert "does not look like a chest X-ray" in analysis.decision and "limit" in analysis.decision
    result = analysis.as_json()
    assert result["gate_passed"] is False and result["pneumonia_probability"] is None and result["label"] is None
    assert any(result["gate_scores"][key] > result["gate_thresholds"][key] for key in SCORE_NAMES)
    json.dumps(result)


def test_service_answers_a_chest_xray_the_gate_passes(service, passing_image):
    analysis = service.analyze_file(passing_image)
    assert not analysis.refused and analysis.gate.checked
    assert analysis.heatmap is not None and "pneumonia probability" in analysis.decision
    assert analysis.as_json()["pneumonia_probability"] == pytest.approx(analysis.prediction.pneumonia_probability)


@pytest.mark.parametrize("method", ["Grad-CAM", "Layer-CAM"])
def test_gate_in_the_shared_pass_scores_as_the_gate_alone(tiny_model_dir, far_outside, passing_image, method):
    model = load_model_dir(tiny_model_dir)
    explainer = Explainer(model)
    for path in (passing_image, far_outside["stripes"]):
        model_input = model.preprocess_file(path)
        alone = model.gate.check(model_input)
        gate, prediction, heatmap = explainer.gate_predict_and_explain(model_input, method)
        assert gate.passed == alone.passed
        for name in SCORE_NAMES:
            assert gate.scores[name] == pytest.approx(alone.scores[name], rel=1e-4)
        if gate.passed:
            assert prediction.pneumonia_probability == pytest.approx(model.predict_input(model_input).pneumonia_probability, abs=1e-6)
            assert heatmap.shape == model_input.shape[:2]
        else:
            assert prediction is None and heatmap is None


def test_evaluate_not_cxr_reports_rejected_fraction(tiny_model_dir, far_outside, tmp_path, capsys):
    folder = tmp_path / "not_cxr"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(far_outside["stripes"], folder / "stripes.png")
    shutil.copy(far_outside["checkerboard"], folder / "nested" / "checkerboard.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "not_cxr.json"
    evaluate.main(["--model", str(tiny_model_dir), "--not-cxr", str(folder), "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["n"] == 3 and report["n_refused_by_decoder"] == 1 and report["n_refused_by_gate"] == 2
    assert report["rejected_fraction"] == 1.0
    assert "1 unreadable, 2 by the input gate" in capsys.readouterr().out


def test_evaluate_on_labelled_images_reports_rejected_fraction(tiny_model_dir, mini_data_dir):
    model = load_model_dir(tiny_model_dir)
    report, _ = evaluate.evaluate_images(model, validation_images(tiny_model_dir))
    assert report["rejected_fraction"] == 0.0 and report["input_gate"]
    assert "rejected" in evaluate.format_report(report)


@pytest.fixture(scope="module")
def gated_client(tiny_model_dir, data_dir):
    """The app with the tiny gated model standing in for the bundled one and an unreachable Hub."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    patch.setenv("MODEL_REPO", "someone/unreachable-model")
    patch.setenv("EXAMPLES_DIR", str(data_dir))
    patch.setattr(hub, "BUNDLED_MODEL_DIR", tiny_model_dir)
    sys.modules.pop("app", None)
    app = importlib.import_module("app")
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=closed_port(), quiet=True)
    yield Client(url, verbose=False)
    app.demo.close()
    sys.modules.pop("app", None)
    patch.undo()


def test_app_predict_returns_the_refusal_cleanly(gated_client, far_outside, passing_image):
    label, decision, original, heatmap, panel, result = gated_client.predict(
        handle_file(str(far_outside["checkerboard"])), None, "Grad-CAM", 0.4, "main", api_name="/predict")
    assert not label and heatmap is None and original is not None  # gr.Label sends {} for None: cleared
    assert "does not look like a chest X-ray" in decision and "Input gate:** on" in panel
    assert result["gate_passed"] is False and result["pneumonia_probability"] is None and result["label"] is None
    label, _, _, heatmap, _, result = gated_client.predict(
        handle_file(passing_image), None, "Grad-CAM", 0.4, "main", api_name="/predict")
    assert result["gate_passed"] and heatmap is not None and len(label["confidences"]) == 2
