"""The Gradio app in-process, through gradio_client: predictions, model info, bad uploads, the example
thumbnails and the explanation lab."""

import importlib
import json
import logging
import shutil
import socket
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from huggingface_hub import constants
from matplotlib.figure import Figure
from PIL import Image

from cxr_pneumonia.config import DATA_ROOT
from cxr_pneumonia.explain import METHODS
from cxr_pneumonia.model import answer, probability_at_prevalence
from tests.conftest import BUNDLED, expected_at_prevalence
from tests.dicom_files import dicom
from tests.labelled_zips import KERMANY_TEST, zip_entries
from tests.test_browser_languages import english_phrases
from ui import render
from ui.files import THUMBNAIL_SIDE, cache_jpeg
from ui.handlers import PageHandlers
from ui.messages import text
from ui.your_data import error_shower, evaluation_handler, on_threshold


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# What HubSettings.from_environment and huggingface_hub read: a shell's settings must not reach these tests.
HUB_VARIABLES = ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE",
                 "MODEL_REPO", "MODEL_REVISION")


@contextmanager
def app_with_unreachable_hub(examples_dir: Path = DATA_ROOT) -> Iterator[ModuleType]:
    """The app module imported afresh with an unreachable Hub, online, whatever the shell's HF_* variables say,
    its examples read from `examples_dir` (the data root the manifest's paths start from)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in HUB_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setattr(constants, "HF_HUB_OFFLINE", False)  # huggingface_hub read the shell's value on import
        patch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
        patch.setenv("MODEL_REPO", "someone/unreachable-model")
        patch.setenv("EXAMPLES_DIR", str(examples_dir))
        sys.modules.pop("app", None)
        yield importlib.import_module("app")


@pytest.fixture(scope="module")
def app():
    """The app module imported with an unreachable Hub."""
    with app_with_unreachable_hub() as module:
        yield module


@pytest.fixture(scope="module")
def client(app):
    """The app launched on 127.0.0.1."""
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=closed_port(),
                                allowed_paths=[str(DATA_ROOT)], quiet=True, i18n=app.demo.page_i18n)
    yield Client(url, verbose=False)
    app.demo.close()


def predict(client: Client, image=None, upload=None, method="Grad-CAM"):
    return client.predict(image and handle_file(str(image)), upload and handle_file(str(upload)), method, 0.4,
                          "main", api_name="/predict")


def test_predict_returns_probabilities_and_heatmap(client, data_dir):
    image = data_dir / "test" / "PNEUMONIA" / "person100_bacteria_475.jpg"
    label, decision, original, heatmap, panel, result = predict(client, image)
    confidences = {item["label"]: item["confidence"] for item in label["confidences"]}
    assert set(confidences) == {"PNEUMONIA", "NORMAL"}
    assert sum(confidences.values()) == pytest.approx(1.0)
    assert result["pneumonia_probability"] == pytest.approx(confidences["PNEUMONIA"])
    assert result["gate_passed"] and result["label"] in confidences
    assert "not a diagnosis" in decision
    assert result["answer"] == answer(result["pneumonia_probability"], BUNDLED.threshold, BUNDLED.uncertain_band)
    heat = np.asarray(Image.open(heatmap))
    assert heat.ndim == 3 and heat.shape[:2] == np.asarray(Image.open(original)).shape[:2]
    assert "bundled" in panel


def test_predict_needs_only_the_image(client, data_dir):
    """Every input after the image has a default: no file, Grad-CAM, opacity 0.4, the configured version."""
    label, decision, _, heatmap, panel, result = client.predict(
        handle_file(str(data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg")), api_name="/predict")
    assert len(label["confidences"]) == 2 and heatmap is not None
    assert "Heatmap: Grad-CAM" in decision and "bundled" in panel and result["gate_passed"]


def test_model_info_says_the_bundled_model_is_used_when_the_hub_is_unreachable(client):
    info = client.predict(api_name="/model_info")
    assert info["source"] == "bundled" and info["repo_id"] == "someone/unreachable-model"
    assert "could not be reached" in info["fallback_reason"]
    assert set(info["metrics"]) >= {"accuracy", "auc", "sensitivity", "specificity"}


@pytest.mark.parametrize("method", ["Grad-CAM++", "Layer-CAM"])
def test_other_explanation_methods(client, data_dir, method):
    _, decision, _, heatmap, _, _ = predict(client, data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg", method=method)
    assert method in decision and Image.open(heatmap).size[0] > 0


def test_dicom_through_the_file_input(client, tmp_path, data_dir):
    gray = Image.open(data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg").convert("L")
    pixels = np.asarray(gray, dtype=np.uint16) * 16
    path = tmp_path / "chest.dcm"
    path.write_bytes(dicom(pixels, bits=12))
    label, _, original, _, _, _ = predict(client, upload=path)
    assert {item["label"] for item in label["confidences"]} == {"PNEUMONIA", "NORMAL"}
    assert Image.open(original).size == (pixels.shape[1], pixels.shape[0])


@pytest.mark.parametrize("name, content, message", [
    ("notes.png", b"these are my notes, not an image", "text"),
    ("empty.jpg", b"", "empty"),
    ("tiny.png", None, "too small"),
])
def test_bad_uploads_get_a_clear_message_and_the_app_keeps_serving(client, tmp_path, data_dir, name, content, message):
    path = tmp_path / name
    if content is None:
        Image.new("L", (10, 10), 128).save(path)
    else:
        path.write_bytes(content)
    with pytest.raises(AppError, match=message) as refused:
        predict(client, upload=path)
    assert "Traceback" not in str(refused.value)
    label, *_ = predict(client, data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg")
    assert len(label["confidences"]) == 2


def test_no_image_is_a_clear_message(client):
    with pytest.raises(AppError, match="Upload a chest X-ray"):
        predict(client)


def test_output_images_get_names_of_their_own_never_the_uploads(app):
    """Each image written for an answer has a folder of its own with a random name (removed after the answer)."""
    pixels = np.full((40, 50, 3), 90, np.uint8)
    first, second = cache_jpeg(pixels), cache_jpeg(pixels)
    assert first != second and Path(first).name == Path(second).name == "image.jpeg"
    assert np.abs(np.asarray(Image.open(first), dtype=int) - pixels).mean() < 3


def magenta_pixels(path: str) -> int:
    """How many pixels of a JPEG are the boxes' magenta (give or take JPEG's rounding)."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    return int(np.sum((pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] > 200)))


def boxed_example(app):
    """The first example with radiologists' boxes (an adult pneumonia from the RSNA test split)."""
    return next(item for item in app.examples if item.boxes)


def galleries(app) -> dict[str, Any]:
    """The example galleries of the page, by population."""
    return {block.elem_id.removeprefix("examples-"): block for block in app.demo.blocks.values()
            if isinstance(block, gr.Gallery) and (block.elem_id or "").startswith("examples-")}


ENGLISH = SimpleNamespace(headers={"accept-language": "en-US,en"})  # a request from an English browser
FRENCH = SimpleNamespace(headers={"accept-language": "fr-FR,fr;q=0.9,en;q=0.8"})  # and from a French one


def gallery_load(app) -> int:
    """The page's load event that captions the example galleries (and the lab's example picker)."""
    return next(index for index, fn in app.demo.fns.items() if fn.name == "handle" and not fn.inputs)


def test_examples_are_children_and_adults_shown_as_thumbnails(app):
    shown = {(item.example.population, item.example.label) for item in app.examples}
    assert shown == {(population, label) for population in ("child", "adult") for label in ("NORMAL", "PNEUMONIA")}
    assert {item.example.kind for item in app.examples} >= {"typical", "borderline"}
    assert all(item.path.is_file() and item.path.is_relative_to(DATA_ROOT) for item in app.examples)
    boxed = [item for item in app.examples if item.boxes]
    assert boxed and all(item.example.population == "adult" and item.example.label == "PNEUMONIA" for item in boxed)
    assert set(galleries(app)) == {"child", "adult"}
    loaded = app.demo.fns[gallery_load(app)].fn(ENGLISH)  # the galleries, then the lab's example picker
    captioned = dict(zip(galleries(app), loaded[:-1], strict=True))
    assert next(label for label, _ in loaded[-1].constructor_args["choices"]).startswith(("Child: ", "Adult: "))
    for population, gallery in galleries(app).items():
        items = [item for item in app.examples if item.example.population == population]
        assert [entry["caption"] for entry in captioned[population].value] == [
            f"{item.example.label}, {item.example.kind}" for item in items]
        for entry in gallery.value:
            thumbnail = Image.open(entry["image"]["path"])
            assert thumbnail.format == "JPEG" and max(thumbnail.size) <= THUMBNAIL_SIDE
    adult_label = galleries(app)["adult"].label.key
    assert "radiologists' boxes" in app.demo.page_i18n.translations_dict["en"][adult_label]
    assert "cadres tracés par les radiologues" in app.demo.page_i18n.translations_dict["fr"][adult_label]


def test_an_example_with_boxes_gets_the_hit_test_and_the_mass_share(client, app, data_dir):
    item = boxed_example(app)
    _, decision, _, heatmap, _, result = client.predict(handle_file(str(item.path)), None, "Grad-CAM", 0.4, "main",
                                                        True, api_name="/predict")
    assert result["boxes"] == [[box.x, box.y, box.width, box.height] for box in item.boxes]
    assert isinstance(result["box_hit"], bool) and 0 <= result["box_mass_share"] <= 1
    assert result["box_mass_ratio"] > result["box_mass_share"]  # the boxes cover less than the whole image
    assert "radiologists' boxes" in decision and ("**inside**" if result["box_hit"] else "**outside**") in decision
    assert magenta_pixels(heatmap) > 100
    _, decision, _, heatmap, _, hidden = client.predict(handle_file(str(item.path)), api_name="/predict")
    assert hidden["box_hit"] == result["box_hit"]
    assert hidden["box_mass_share"] == pytest.approx(result["box_mass_share"])
    assert magenta_pixels(heatmap) == 0 and "Show the radiologists' boxes" in decision
    *_, child = client.predict(handle_file(str(data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg")), api_name="/predict")
    assert "box_hit" not in child and "boxes" not in child


def test_compare_returns_every_methods_map_with_its_time(client, app):
    item = boxed_example(app)
    gallery, summary, result = client.predict(handle_file(str(item.path)), None, 0.4, "main", True,
                                              api_name="/compare")
    assert [entry["caption"].split(":")[0].strip("*") for entry in gallery] == list(METHODS)
    assert all(" ms; peak " in entry["caption"] for entry in gallery)
    for entry in gallery:
        assert magenta_pixels(entry["image"]) > 100
    assert list(result["methods"]) == list(METHODS) and all(row["ms"] > 0 for row in result["methods"].values())
    assert f"evidence for **{result['label']}**" in summary


@pytest.fixture(scope="module")
def handlers(app):
    """The page's handlers over the app's service, counting the model's passes."""
    return PageHandlers(app.service, app.model_workers, app.examples, retention_seconds=60)


class ModelCalls:
    """Counts the explainer's full passes (gate, prediction and map) and its map-only passes."""

    def __init__(self, monkeypatch, explainer):
        self.full = self.maps = 0
        full, maps = explainer.gate_predict_and_explain, explainer.heatmap

        def counted_full(*args, **kwargs):
            self.full += 1
            return full(*args, **kwargs)

        def counted_maps(*args, **kwargs):
            self.maps += 1
            return maps(*args, **kwargs)

        monkeypatch.setattr(explainer, "gate_predict_and_explain", counted_full)
        monkeypatch.setattr(explainer, "heatmap", counted_maps)


def test_opacity_boxes_and_prevalence_reuse_the_result_and_a_method_change_only_the_map(app, handlers, monkeypatch):
    item = boxed_example(app)
    current = handlers.analyse_path(str(item.path), "Grad-CAM", 0.4, "", False, item)
    calls = ModelCalls(monkeypatch, current.prepared.loaded.explainer)
    reblended = handlers.on_blend(ENGLISH, current, 0.9, True, 30)  # the prevalence control is in percent
    assert (calls.full, calls.maps) == (0, 0)
    assert magenta_pixels(reblended[1].constructor_args["value"][1]) > 100 and "radiologists' boxes" in reblended[0]
    handlers.on_prevalence(ENGLISH, current, 5)
    assert (calls.full, calls.maps) == (0, 0)
    remapped = handlers.on_method(ENGLISH, current, "Layer-CAM", 0.4, False, 50)
    assert (calls.full, calls.maps) == (0, 1)
    assert "Heatmap: Layer-CAM" in remapped[0] and remapped[-1].analysis.method == "Layer-CAM"


def test_the_lab_gives_every_map_the_sanity_check_and_the_curves(app, handlers):
    item = boxed_example(app)
    current = handlers.analyse_path(str(item.path), "Grad-CAM", 0.4, "", True, item)
    summary, *rest = handlers.on_lab_maps(ENGLISH, current, 0.4)
    maps, captions = rest[:len(METHODS)], rest[len(METHODS):2 * len(METHODS)]
    comparison = rest[-1]
    assert "evidence for" in summary and all(Path(path).is_file() for path in maps)
    assert all("sanity check running" in caption for caption in captions)
    checks = handlers.on_lab_checks(ENGLISH, current, comparison, 0.4)
    captions = checks[len(METHODS):2 * len(METHODS)]
    for method, caption in zip(METHODS, captions, strict=True):
        assert caption.startswith(f"**{method}**: ") and " ms; peak " in caption and " rho " in caption
    sanity, curves, faithfulness = checks[-3:]
    assert "Spearman" in sanity and all(f"| {method} |" in sanity for method in METHODS)
    assert isinstance(curves, Figure) and len(curves.axes) == 2
    assert all(f"| {method} |" in faithfulness for method in METHODS)


def test_an_unknown_version_is_a_clear_error_never_another_model(client):
    with pytest.raises(AppError, match=r"cannot be served.*cannot be fetched"):
        predict_version(client, "does-not-exist")
    with pytest.raises(AppError, match="cannot be served"):
        client.predict(handle_file(str(DATA_ROOT / "chest_xray" / "test" / "NORMAL" / "IM-0001-0001.jpg")), None,
                       0.4, "v1.0.0", False, api_name="/compare")
    label, *_ = predict_version(client, BUNDLED.extra["version"])  # the served model, by its name
    assert len(label["confidences"]) == 2


def predict_version(client, version: str):
    return client.predict(handle_file(str(DATA_ROOT / "chest_xray" / "test" / "NORMAL" / "IM-0001-0001.jpg")), None,
                          "Grad-CAM", 0.4, version, api_name="/predict")


def test_two_images_at_once_are_refused(client, data_dir):
    image = data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg"
    with pytest.raises(AppError, match="Two images"):
        predict(client, image, image)


def test_user_mistakes_are_one_log_line_each_never_a_traceback(client, data_dir, tmp_path, capfd, caplog):
    """A bad upload, an unknown version, a prevalence of 0 or 1, two images at once: the caller gets a clear error,
    the server's log one line naming the mistake (never the file's name) and no traceback."""
    image = data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg"
    notes = tmp_path / "patient-0815-notes.png"
    notes.write_bytes(b"these are my notes, not an image")
    on_predict = lambda prevalence: client.predict(handle_file(str(image)), None, "Grad-CAM", 0.4, "", False,  # noqa: E731
                                                   prevalence, api_name="/predict")
    mistakes = [("unreadable (not_an_image)", "a text file", lambda: predict(client, upload=notes)),
                ("unknown version", "cannot be served", lambda: predict_version(client, "does-not-exist")),
                ("prevalence out of range", "strictly between 0 and 1", lambda: on_predict(0)),
                ("prevalence out of range", "strictly between 0 and 1", lambda: on_predict(1)),
                ("two_images", "Two images", lambda: predict(client, image, image))]
    caplog.set_level(logging.INFO, logger="ui")
    for code, message, call in mistakes:
        caplog.clear()
        capfd.readouterr()
        with pytest.raises(AppError, match=message):
            call()
        assert [record.getMessage() for record in caplog.records if record.name == "ui"] == [f"user mistake: {code}"]
        out, err = capfd.readouterr()
        assert "Traceback" not in out + err and "patient-0815" not in out + err, (code, out + err)


def test_predict_takes_the_prevalence_last_and_refuses_one_outside_0_1(client, data_dir):
    image = handle_file(str(data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg"))
    *_, result = client.predict(image, None, "Grad-CAM", 0.4, "", False, 0.05, api_name="/predict")
    assert result["prevalence"] == 0.05 and result["answer"] in ("NORMAL", "PNEUMONIA")
    assert result["pneumonia_probability_at_prevalence"] == expected_at_prevalence(result, 0.05)
    for bad in (0, 1):
        with pytest.raises(AppError, match=r"prevalence|(less|greater) than (minimum|maximum) value"):
            client.predict(image, None, "Grad-CAM", 0.4, "", False, bad, api_name="/predict")


def test_the_version_picker_and_the_panel_name_the_served_version_and_every_source(app):
    picker = next(block for block in app.demo.blocks.values() if getattr(block, "elem_id", None) == "version")
    english = app.demo.page_i18n.translations_dict["en"]
    assert picker.value == BUNDLED.extra["version"] and "cannot be listed" in english[picker.info.key]
    panel = render.model_markdown(app.service.default.info(), "en")
    assert "children" in panel and "adults" in panel and panel.count("accuracy") == 2
    note = text("student_note", "en", **render.student_note(app.service.default.info()))
    assert f"{app.service.default.model.gradcam_grid}x{app.service.default.model.gradcam_grid} grid" in note
    assert "8x8" not in note


def banded_model(source: Path, target: Path) -> Path:
    """A copy of a model directory whose config.json states a prevalence and an uncertain band over everything."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(calibrated_prevalence=0.5, uncertain_band={"low": 0.0, "high": 1.0, "rule": "test: everything"})
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_a_model_with_a_band_says_uncertain_and_moves_with_the_prevalence(hub, tiny_model_dir, tmp_path, data_dir,
                                                                           monkeypatch):
    from cxr_pneumonia.hub import HubSettings, publish_model_dir
    from cxr_pneumonia.service import PneumoniaService

    settings = HubSettings(repo_id="someone/banded", revision="v3.0.0", endpoint=hub.url,
                           cache_dir=str(tmp_path / "cache"))
    publish_model_dir(settings, banded_model(tiny_model_dir, tmp_path / "banded"), "v3.0.0", "v3.0.0")
    service = PneumoniaService(settings)
    with ThreadPoolExecutor(1) as workers:
        page = PageHandlers(service, workers, [], retention_seconds=60)
        current = page.analyse_path(str(data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg"), "Grad-CAM", 0.4, "",
                                    False)
        decision, _, _, prevalence_text, _, _, _, result, _ = page.result(current, 0.5, "en")
        assert "cannot tell; a clinician must read the X-ray" in decision and result["answer"] == "UNCERTAIN"
        assert "At a prevalence of 50 %" in prevalence_text and "Bayes' rule" in prevalence_text
        assert result["label"] in ("NORMAL", "PNEUMONIA")
        calls = ModelCalls(monkeypatch, current.prepared.loaded.explainer)
        screening, screening_json = page.on_prevalence(ENGLISH, current, 5)
        emergency, _ = page.on_prevalence(ENGLISH, current, 30)
        assert (calls.full, calls.maps) == (0, 0)
        probability = result["pneumonia_probability"]
        expected = probability_at_prevalence(probability, 0.05, 0.5)
        assert screening_json["pneumonia_probability_at_prevalence"] == pytest.approx(expected)
        assert f"{100 * expected:.0f} %" in screening and "prevalence of 5 %" in screening
        assert "prevalence of 30 %" in emergency


def test_the_your_data_tab_answers_a_french_browser_in_french(app, tmp_path):
    """The Evaluate button, the slider and a click on an error as the page calls them for a French browser: the
    summary and its notes, the progress, the figures' words, the reasons of the files not read (told from the
    decoder's and the zip's codes) and a refused zip's message, all in French."""
    normal = sorted((KERMANY_TEST / "NORMAL").iterdir())[:2]
    pneumonia = sorted((KERMANY_TEST / "PNEUMONIA").iterdir())[0]
    source = zip_entries(tmp_path / "service.zip", {
        "NORMAL/a.jpg": normal[0].read_bytes(), "NORMAL/b.jpg": normal[1].read_bytes(),
        "NORMAL/mislabelled.jpg": pneumonia.read_bytes(),  # a pneumonia labelled NORMAL: an error for the gallery
        "NORMAL/notes.jpg": b"these are my notes, not an image", "NORMAL/readme.txt": b"scanned on Monday"})
    evaluate = evaluation_handler(app.service, app.model_workers, retention_seconds=60)
    progress = []
    (_, summary, confusion, roc, reliability, _, at_threshold, _, gallery, skipped, result,
     analyses) = evaluate(FRENCH, str(source), lambda value, desc=None, unit=None: progress.append(desc))
    assert "**3 images de service.zip évaluées** (étiquetées par leurs dossiers NORMAL et PNEUMONIA)" in summary
    assert "| Sensibilité | n.d. | n.d. à n.d. |" in summary and "Seules des images NORMALES ont été lues" in summary
    assert "**Non lus :** 1 fichier(s)" in summary
    assert progress[0] == "Ouverture du zip" and progress[-1] == "Analyse des erreurs pour la galerie"
    assert progress[-2].startswith("4 images analysées sur 4, encore")
    assert roc.axes[0].get_title() == "Courbe ROC sur vos images"
    assert [tick.get_text() for tick in confusion.axes[0].get_xticklabels()] == ["NORMALE", "PNEUMONIE"]
    assert reliability.axes[0].get_xlabel() == "probabilité de pneumonie prédite"
    assert at_threshold.startswith("Au seuil de **")
    assert on_threshold(FRENCH, result, 0.0).startswith("Au seuil de **0,00**")  # a decimal comma
    assert skipped.visible and skipped.value["headers"] == ["fichier", "raison"]
    reasons = dict(skipped.value["data"])
    assert "un fichier texte, pas une image" in reasons["NORMAL/notes.jpg"]
    assert reasons["NORMAL/readme.txt"] == "pas une image, d'après son nom"
    assert "is a text file, not an image" in result.unreadable[0].error  # the CSV and the REST API keep English
    shown = "\n".join([summary, at_threshold, *[caption for _, caption in gallery], *reasons.values()])
    assert not [phrase for phrase in english_phrases() if phrase in shown]
    assert gallery[0][1].startswith("NORMALE classée PNEUMONIE") and len(analyses) == 1
    *_, decision = error_shower(60)(FRENCH, analyses, SimpleNamespace(index=0))
    assert decision.startswith("**NORMAL/mislabelled.jpg**, étiquetée NORMALE dans votre zip.")

    with pytest.raises(gr.Error) as refused:
        evaluate(FRENCH, str(zip_entries(tmp_path / "bad.zip", {"../NORMAL/a.jpg": b"x"})), lambda *_, **__: None)
    assert refused.value.title == "Impossible d'évaluer ce zip" and "chemin dangereux" in refused.value.message
