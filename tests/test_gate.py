"""The input gate: fitting (one-class models on chest X-rays, the classifier against other radiographs, leave
one category out), storage with the model, refusals in the service, the evaluation command and the app. The
tiny test model is barely trained, so these tests check the mechanics (and that images far outside refuse),
not how well the gate separates real-world images."""

import importlib
import json
import shutil
import sys

import keras
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from cxr_pneumonia import hub
from cxr_pneumonia.explain import Explainer
from cxr_pneumonia.gate import (
    ABSENT_MESSAGE,
    CLASSIFIER_FILENAME,
    CLASSIFIER_SCORE,
    GATE_FILENAME,
    KIND_MESSAGES,
    ONE_CLASS_SCORES,
    REFUSAL_MESSAGE,
    SCORE_NAMES,
    GateStatistics,
    VerdictRule,
    gate_function,
    refusal_message,
)
from cxr_pneumonia.hub import HubSettings, ModelLocation
from cxr_pneumonia.model import load_model_dir
from cxr_pneumonia.service import PneumoniaService
from tests.test_app import closed_port
from training import evaluate, gate_classifier, gate_images, report
from training import gate as gate_training
from training.data import test_images, validation_images

CRAFTED_CATEGORIES = {"chest_lateral": 2, "knee": 2, "mammogram": 2}


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
def crafted_negatives(tmp_path_factory):
    """A tiny negatives folder: two real radiographs of each of three categories, and files that are not images."""
    root = tmp_path_factory.mktemp("crafted") / "other_radiographs"
    for category, count in CRAFTED_CATEGORIES.items():
        (root / category).mkdir(parents=True)
        for source in sorted((gate_training.DEFAULT_NEGATIVES_DIR / category).iterdir())[:count]:
            (root / category / source.name).symlink_to(source)
    (root / "knee" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("# crafted")
    return root


@pytest.fixture(scope="module")
def passing_image(tiny_model_dir):
    """A validation chest X-ray the gate passes."""
    model = load_model_dir(tiny_model_dir)
    return next(path for path in validation_images(tiny_model_dir).paths
                if model.gate.check(model.preprocess_file(path)).passed)


@pytest.fixture(scope="module")
def refused_radiograph(tiny_model_dir):
    """A radiograph of the shared set that is not a frontal chest X-ray and that the tiny model's gate refuses."""
    model = load_model_dir(tiny_model_dir)
    paths = evaluate.list_files(gate_training.DEFAULT_NEGATIVES_DIR)
    return next(path for path in paths if not model.gate.check(model.preprocess_file(path)).passed)


def test_training_fits_a_gate_with_its_classifier_into_the_model_directory(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    block = config["gate"]
    assert (tiny_model_dir / GATE_FILENAME).is_file() and (tiny_model_dir / CLASSIFIER_FILENAME).is_file()
    assert set(block["evidence"]["bases"]) == set(block["evidence"]["scales"]) == set(SCORE_NAMES)
    assert block["feature_layers"] == ["stage3_pool"] and block["feature_grid"] == 2
    assert "Mahalanobis" in block["method"] and block["validation_refused_fraction"] <= 0.01
    assert block["normalization"] == config["normalization"] == "equalize"
    assert set(block["n_fit_images_by_source"]) == {"mini_chest_xray0", "rsna_pneumonia"}
    assert block["classifier"]["classes"] == list(gate_images.CLASSES)
    categories = block["negatives"]["categories"]
    assert set(categories) == {path.name for path in gate_training.DEFAULT_NEGATIVES_DIR.iterdir() if path.is_dir()}
    assert categories["chest_lateral"]["class"] == "lateral_chest" and categories["knee"]["class"] == "other_body_part"
    assert block["negatives"]["all"]["n"] == sum(row["n"] for row in categories.values()) == 201
    assert all(0 <= row["refused_left_out"] <= row["n"] for row in categories.values())
    gate = load_model_dir(tiny_model_dir).gate
    assert gate.present and gate.classes == gate_images.CLASSES


def test_gate_features_are_the_layer_averaged_over_each_grid_cell(tiny_model_dir):
    model = load_model_dir(tiny_model_dir)
    batch = np.random.default_rng(0).random((3, model.config.image_size, model.config.image_size, 1), np.float32)
    maps = keras.Model(model.inference_model.inputs, model.inference_model.get_layer("stage3_pool").output)(batch)
    maps = np.asarray(maps)
    n, height, width, channels = maps.shape
    top_left = maps[:, : height // 2, : width // 2].mean(axis=(1, 2))
    bottom_right = maps[:, height // 2 :, width // 2 :].mean(axis=(1, 2))
    for grid, expected in ((2, np.concatenate([top_left, bottom_right], axis=1)), (1, maps.mean(axis=(1, 2)))):
        features = gate_function(model.inference_model, ["stage3_pool"], grid=grid)(batch)
        assert features.shape == (n, grid * grid * channels)
        picked = np.concatenate([features[:, :channels], features[:, -channels:]], axis=1) if grid == 2 else features
        np.testing.assert_allclose(picked, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="does not divide"):
        gate_function(model.inference_model, ["stage3_pool"], grid=3)


def test_gate_round_trips_through_npz_without_pickle(tiny_model_dir, tmp_path):
    statistics = GateStatistics.load(tiny_model_dir / GATE_FILENAME)
    statistics.save(tmp_path / GATE_FILENAME)
    again = GateStatistics.load(tmp_path / GATE_FILENAME)
    for key in ("feature_mean", "feature_precision", "thumbnail_mean", "thumbnail_components"):
        assert np.array_equal(getattr(statistics, key), getattr(again, key))
    components = statistics.thumbnail_components
    assert np.allclose(components @ components.T, np.eye(len(components)), atol=1e-6)


def test_the_rule_is_fitted_on_validation_scores(tiny_model_dir):
    model = load_model_dir(tiny_model_dir)
    block = model.config.gate
    validation = validation_images(tiny_model_dir)
    changes = {"plain": None, "changed": gate_images.acquisition_change}
    held = gate_images.read_inputs(validation.paths, model.config.image_size, model.config.preprocessing,
                                     changes, block["seed"] + 1)
    both = np.concatenate([held["plain"], held["changed"]])
    scores = model.gate.scores(both)
    assert set(scores) == set(SCORE_NAMES)
    rule = model.gate.rule
    for name in SCORE_NAMES:
        base = np.quantile(scores[name], gate_training.BASE_QUANTILE)
        assert rule.bases[name] == pytest.approx(base, rel=1e-4)
        assert rule.scales[name] == pytest.approx(np.mean(scores[name][scores[name] > base] - base), rel=1e-3)
    assert rule.limit == pytest.approx(np.quantile(rule.evidence(scores, len(both)), 0.99, method="higher"), rel=1e-4)
    assert model.gate.refused(both).mean() <= 0.01
    assert model.gate.refused(held["plain"]).mean() == block["validation_refused_fraction"]


def test_the_rule_sums_each_score_s_excess_and_reads_old_per_score_thresholds():
    rule = VerdictRule({"a": 1.0, "b": 10.0}, {"a": 0.5, "b": 2.0}, 1.5)
    scores = {"a": np.array([0.0, 1.5, 1.4, 1.9]), "b": np.array([20.0, 10.0, 11.2, 9.0])}
    # excess in scales: a 0, 1, 0.8, 1.8; b 5, 0, 0.6, 0
    np.testing.assert_allclose(rule.evidence(scores, 4), [5.0, 1.0, 1.4, 1.8])
    assert rule.refused(scores, 4).tolist() == [True, False, False, True]
    old = VerdictRule.from_block({"thresholds": {"a": 1.0, "b": 10.0}})  # a gate fitted before the summed rule
    assert old.refused(scores, 4).tolist() == [True, True, True, True] and old.limit == 0.0
    assert old.refused({"a": np.array([1.0]), "b": np.array([10.0])}, 1).tolist() == [False]
    assert VerdictRule.from_block({"evidence": rule.to_json()}) == rule


def test_refit_from_the_command_line_leaves_each_category_out(tiny_model_dir, crafted_negatives, tmp_path, capsys):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    gate_training.main(["--model", str(copy), "--negatives", str(crafted_negatives), "--max-images", "6",
                        "--seed", "3"])
    block = json.loads((copy / "config.json").read_text())["gate"]
    assert block["n_fit_images"] == 6 and block["seed"] == 3 and block["n_fit_images_by_source"]["rsna_pneumonia"] == 3
    categories = block["negatives"]["categories"]
    assert {name: row["n"] for name, row in categories.items()} == CRAFTED_CATEGORIES  # notes.txt is no image
    assert all("refused_left_out" in row for row in categories.values()) and block["negatives"]["all"]["n"] == 6
    out = capsys.readouterr().out
    assert '"limit"' in out and "| chest_lateral | lateral_chest | 2 |" in out and "left out knee: refused" in out


def test_a_one_class_refit_drops_the_classifier_and_still_loads(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    gate_training.main(["--model", str(copy), "--one-class-only", "--max-images", "6"])
    block = json.loads((copy / "config.json").read_text())["gate"]
    assert set(block["evidence"]["bases"]) == set(ONE_CLASS_SCORES) and "classifier" not in block
    assert not (copy / CLASSIFIER_FILENAME).exists() and "classifier" not in block["method"]
    gate = load_model_dir(copy).gate
    assert gate.classifier is None and set(gate.scores(np.zeros((1, 64, 64, 1), np.float32))) == set(ONE_CLASS_SCORES)


def test_after_a_refit_measure_only_updates_the_refusals_and_keeps_the_rest(tiny_model_dir, mini_data_dir,
                                                                            mini_rsna_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    before = json.loads((copy / "config.json").read_text())["gate"]["evidence"]["limit"]
    gate_training.main(["--model", str(copy), "--one-class-only", "--max-images", "6", "--max-refused", "0.5"])
    assert json.loads((copy / "config.json").read_text())["gate"]["evidence"]["limit"] != before
    old = json.loads((copy / "metrics.json").read_text())
    report.main(["--model", str(copy), "--data", str(mini_data_dir), str(mini_rsna_dir), "--measure-only"])
    new = json.loads((copy / "metrics.json").read_text())
    model = load_model_dir(copy)
    for directory in (mini_data_dir, mini_rsna_dir):
        measured = evaluate.gate_report(model, test_images(directory).paths)["rejected_fraction"]
        row = new["test_by_source"][directory.name]
        assert row["rejected_fraction"] == pytest.approx(measured)
        assert row["auc"] == old["test_by_source"][directory.name]["auc"]
    assert new["training"] == old["training"] and new["framing_check"] == old["framing_check"]
    assert f"{new['test']['rejected_fraction']:.1%} of the" in (copy / "README.md").read_text()


def test_the_fit_needs_every_source_the_model_was_trained_on(tiny_model_dir, mini_data_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    with pytest.raises(ValueError, match="rsna_pneumonia"):
        gate_training.fit_gate(copy, [mini_data_dir], None)


def test_leave_one_category_out_trains_without_each_category_in_turn():
    categories = np.array(["knee"] * 3 + ["hand"] * 2 + [""] * 4)
    original = np.array([True, True, False, True, False, True, True, True, True])
    negatives = gate_images.Negatives(np.arange(9.0)[:, None], np.array([2] * 5 + [5] * 4), categories, original)
    seen = {}

    def refused_without(category):
        training = negatives.without(category)
        seen[category] = set(training.categories)
        return negatives.originals_of(category)[:, 0] > 0

    results = gate_training.leave_one_category_out(["knee", "hand"], refused_without)
    assert seen == {"knee": {"hand", ""}, "hand": {"knee", ""}}
    assert results == {"knee": {"n": 2, "refused_left_out": 1}, "hand": {"n": 1, "refused_left_out": 1}}
    assert negatives.originals_of("knee")[:, 0].tolist() == [0.0, 1.0]


def test_category_table_shows_both_shares_per_category():
    categories = {"knee": {"class": "other_body_part", "n": 4, "refused": 4, "refused_left_out": 3},
                  "chest_lateral": {"class": "lateral_chest", "n": 2, "refused": 2, "refused_left_out": 2}}
    block = {"negatives": {"categories": categories, "all": {"n": 6, "refused": 6, "refused_left_out": 5}}}
    table = gate_training.category_table(block)
    assert "| knee | other_body_part | 4 | 100% (4/4) | 75% (3/4) |" in table
    assert table.splitlines()[-1] == "| all |  | 6 | 100% (6/6) | 83% (5/6) |"
    assert gate_training.category_table({}) == ""
    categories["knee"] |= {"n": 201, "refused": 1, "refused_left_out": 200}
    assert "| knee | other_body_part | 201 | 0.5% (1/201) | 99.5% (200/201) |" in gate_training.category_table(block)


def test_synthetic_negatives_are_pictures_in_range():
    rng = np.random.default_rng(0)
    chest = rng.uniform(size=(120, 100))
    assert gate_images.turned(chest, rng).shape in {(100, 120), (120, 100)}
    assert max(gate_images.part_of(chest, rng).shape) <= 120
    for _ in range(10):
        picture = gate_images.synthetic_picture(rng, 64)
        assert picture.shape == (64, 64) and 0.0 <= picture.min() <= picture.max() <= 1.0


def test_training_batches_are_half_negatives_then_even_over_the_kinds():
    rng = np.random.default_rng(0)
    negative = np.arange(200) >= 150
    assert negative[gate_classifier.half_and_half(negative, 64, rng)].sum() == 32
    classes = np.array([0] * 3 + [1] * 50 + [4] * 20)
    assert sorted(np.bincount(classes[gate_classifier.evenly(classes, 64, rng)])[[0, 1, 4]]) == [21, 21, 22]


def test_refusal_messages_say_what_the_image_looks_like_and_what_to_upload():
    for kind, (looks_like, instead) in KIND_MESSAGES.items():
        message = refusal_message(kind)
        assert "does not look like a chest X-ray" in message and looks_like in message and instead in message
    assert refusal_message(None) == refusal_message("frontal_chest") == REFUSAL_MESSAGE


def test_the_gate_names_a_kind_only_when_its_classifier_finds_it_unusual_and_is_sure(tiny_model_dir):
    gate = load_model_dir(tiny_model_dir).gate
    limit = gate.rule.bases[CLASSIFIER_SCORE]

    def outputs(not_frontal: float, lateral: float) -> np.ndarray:
        row = np.zeros(len(gate.classes))
        row[0], row[gate.classes.index("lateral_chest")] = not_frontal, lateral
        return row

    assert gate.known_kind(outputs(limit + 1, 5.0)) == "lateral_chest"
    assert gate.known_kind(outputs(limit + 1, 0.5)) is None  # about 0.3 among five kinds: not sure
    assert gate.known_kind(outputs(limit - 1, 5.0)) is None  # refused for other scores: the kind head is not asked


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


@pytest.mark.parametrize("missing", [GATE_FILENAME, CLASSIFIER_FILENAME])
def test_a_gate_block_without_its_files_fails_loudly(tiny_model_dir, tmp_path, missing):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (copy / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
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
    assert result["gate_evidence"] > result["gate_limit"] == analysis.gate.rule.limit
    json.dumps(result)


def test_service_answers_a_chest_xray_the_gate_passes(service, passing_image):
    analysis = service.analyze_file(passing_image)
    assert not analysis.refused and analysis.gate.checked
    assert analysis.heatmap is not None and "pneumonia probability" in analysis.decision
    assert analysis.as_json()["pneumonia_probability"] == pytest.approx(analysis.prediction.pneumonia_probability)


@pytest.mark.parametrize("method", ["Grad-CAM", "Layer-CAM"])
def test_gate_in_the_shared_pass_scores_as_the_gate_alone(tiny_model_dir, far_outside, passing_image,
                                                          refused_radiograph, method):
    model = load_model_dir(tiny_model_dir)
    explainer = Explainer(model)
    for path in (passing_image, far_outside["stripes"], refused_radiograph):
        model_input = model.preprocess_file(path)
        alone = model.gate.check(model_input)
        gate, prediction, heatmap = explainer.gate_predict_and_explain(model_input, method)
        assert gate.passed == alone.passed and gate.kind == alone.kind and gate.message == alone.message
        assert set(gate.scores) == set(SCORE_NAMES)
        for name in SCORE_NAMES:
            assert gate.scores[name] == pytest.approx(alone.scores[name], rel=1e-4, abs=1e-4)
        if gate.passed:
            alone_probability = model.predict_input(model_input).pneumonia_probability
            assert prediction.pneumonia_probability == pytest.approx(alone_probability, abs=1e-6)
            assert heatmap.shape == model_input.shape[:2]
        else:
            assert prediction is None and heatmap is None


def test_evaluate_not_cxr_counts_refusals_per_folder_and_skips_files_that_are_not_images(
        tiny_model_dir, far_outside, tmp_path, capsys):
    folder = tmp_path / "not_cxr"
    (folder / "patterns").mkdir(parents=True)
    (folder / "broken").mkdir()
    shutil.copy(far_outside["stripes"], folder / "patterns" / "stripes.png")
    shutil.copy(far_outside["checkerboard"], folder / "patterns" / "checkerboard.png")
    shutil.copy(far_outside["checkerboard"], folder / "top_level.png")
    (folder / "broken" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "README.md").write_text("# not an image")
    (folder / "MANIFEST.csv").write_text("category,filename\n")
    out = tmp_path / "not_cxr.json"
    evaluate.main(["--model", str(tiny_model_dir), "--not-cxr", str(folder), "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["n"] == 4 and report["n_refused_by_decoder"] == 1 and report["n_refused_by_gate"] == 3
    assert report["skipped_not_images"] == ["MANIFEST.csv", "README.md"]
    patterns, broken = report["by_folder"]["patterns"], report["by_folder"]["broken"]
    assert (patterns["n"], patterns["n_refused_by_gate"], broken["n"], broken["n_refused_by_decoder"]) == (2, 2, 1, 1)
    assert sum(patterns["n_refused_by_kind_told"].values()) == 2
    printed = capsys.readouterr().out
    assert "patterns" in printed and "1 unreadable, 3 by the input gate" in printed and "README.md" in printed


def test_evaluate_on_labelled_images_reports_rejected_fraction(tiny_model_dir, mini_data_dir):
    model = load_model_dir(tiny_model_dir)
    report, _ = evaluate.evaluate_images(model, validation_images(tiny_model_dir))
    assert 0.0 <= report["rejected_fraction"] <= 0.01 and report["input_gate"]
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
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=closed_port(),
                                quiet=True)
    yield Client(url, verbose=False)
    app.demo.close()
    sys.modules.pop("app", None)
    patch.undo()


def test_app_predict_returns_the_refusal_of_a_radiograph_cleanly(gated_client, tiny_model_dir, refused_radiograph,
                                                                  passing_image):
    expected = load_model_dir(tiny_model_dir).gate.check(
        load_model_dir(tiny_model_dir).preprocess_file(refused_radiograph)).message
    label, decision, original, heatmap, panel, result = gated_client.predict(
        handle_file(str(refused_radiograph)), None, "Grad-CAM", 0.4, "main", api_name="/predict")
    assert not label and heatmap is None and original is not None  # gr.Label sends {} for None: cleared
    assert "upload a frontal (PA or AP) chest X-ray" in decision and "Input gate:** on" in panel
    assert result["gate_passed"] is False and result["pneumonia_probability"] is None and result["label"] is None
    assert result["gate_message"] == expected
    label, _, _, heatmap, _, result = gated_client.predict(
        handle_file(passing_image), None, "Grad-CAM", 0.4, "main", api_name="/predict")
    assert result["gate_passed"] and heatmap is not None and len(label["confidences"]) == 2
