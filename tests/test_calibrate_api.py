"""POST /v1/calibrate and the site_profile parameter, on a real server (the app as `python app.py` serves it,
bundled model), with real X-rays."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cxr_pneumonia.config import LABELS
from cxr_pneumonia.site_profile import SiteProfile, without_date
from tests import test_evaluate_api
from tests.labelled_zips import labelled_folder, zip_folder
from tests.test_api import served
from tests.test_app import app_with_unreachable_hub
from tests.test_labelled_zip import NORMAL_BYTES, PNEUMONIA_BYTES

ZIP = {"Content-Type": "application/zip"}


app, url = test_evaluate_api.app, test_evaluate_api.url  # the app imported with an unreachable Hub, served


def normals_zip(root: Path, normals: int, pneumonias: int = 0) -> bytes:
    """A zip of real Kermany test X-rays: `normals` in NORMAL/ and `pneumonias` in PNEUMONIA/."""
    folder = labelled_folder(root / "site", per_class=max(normals, pneumonias))
    for label, keep in zip(LABELS, (normals, pneumonias), strict=True):
        for extra in sorted((folder / label).iterdir())[keep:]:
            extra.unlink()
    return zip_folder(folder, root / "site.zip").read_bytes()


@pytest.fixture(scope="module")
def forty_normals(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return normals_zip(tmp_path_factory.mktemp("forty"), 40, 12)


def calibrate(url: str, body: bytes, site: str = "St Elsewhere", target: float = 0.9) -> httpx.Response:
    return httpx.post(f"{url}/v1/calibrate", params={"site": site, "target_specificity": target}, content=body,
                      headers=ZIP, timeout=120)


@pytest.fixture(scope="module")
def fitted(url, forty_normals) -> dict:
    return calibrate(url, forty_normals).raise_for_status().json()


def test_the_profile_is_fitted_on_the_accepted_normals(fitted, app):
    profile = SiteProfile.from_json(fitted)
    model = app.service.default.model
    assert profile.site == "St Elsewhere" and profile.model_version == model.config.extra["version"]
    assert profile.weights_sha256 == model.weights_sha256
    assert profile.n_normal + profile.n_refused <= 40 and profile.n_pneumonia <= 12
    k = -(-(profile.n_normal + 1) * 9 // 10)  # ceil((n + 1) x 0.9)
    assert profile.expected_specificity == pytest.approx(k / (profile.n_normal + 1))
    assert profile.specificity_lower_bound < profile.expected_specificity
    assert profile.sensitivity is not None and profile.sensitivity_interval is not None


def test_the_same_zip_twice_gives_the_same_profile_dates_aside(url, fitted, forty_normals):
    again = SiteProfile.from_json(calibrate(url, forty_normals).raise_for_status().json())
    assert without_date(again) == without_date(SiteProfile.from_json(fitted))


def test_29_normals_are_400_with_the_number_needed(url, tmp_path: Path):
    response = calibrate(url, normals_zip(tmp_path, 29))
    assert response.status_code == 400
    assert "at least 30 are needed" in response.json()["error"] and response.json()["needed"] == 30


def test_multipart_with_form_fields_gives_the_same_profile(url, fitted, forty_normals):
    response = httpx.post(f"{url}/v1/calibrate", files={"file": ("site.zip", forty_normals, "application/zip")},
                          data={"site": "St Elsewhere", "target_specificity": "0.9"}, timeout=120)
    assert without_date(SiteProfile.from_json(response.raise_for_status().json())) == \
        without_date(SiteProfile.from_json(fitted))


@pytest.mark.parametrize("query", [{"target_specificity": 0.9}, {"site": "x" * 65}, {"site": "a", "target_specificity":
                                                                                      0.995}])
def test_a_missing_site_or_a_bad_target_is_400(url, forty_normals, query):
    response = httpx.post(f"{url}/v1/calibrate", params=query, content=forty_normals, headers=ZIP, timeout=60)
    assert response.status_code == 400


def explain(url: str, parameters: dict, image: bytes = PNEUMONIA_BYTES) -> httpx.Response:
    body = {"inputs": base64.b64encode(image).decode(), "parameters": parameters}
    return httpx.post(f"{url}/v1/explain", json=body, timeout=60)


def test_explain_decides_at_the_profiles_threshold_and_names_the_site(url, fitted):
    plain = explain(url, {}).raise_for_status().json()
    sited = explain(url, {"site_profile": fitted}).raise_for_status().json()
    assert sited["threshold"] == fitted["threshold"] and sited["site"] == "St Elsewhere"
    assert plain["site"] is None and plain["threshold"] != fitted["threshold"]
    probability = sited["pneumonia_probability"]
    assert sited["label"] == ("PNEUMONIA" if probability >= fitted["threshold"] else "NORMAL")
    low, high = fitted["uncertain_band"]
    assert sited["answer"] == ("UNCERTAIN" if low <= probability < high else sited["label"])


def test_classify_and_compare_take_the_profile(url, fitted):
    body = {"inputs": base64.b64encode(NORMAL_BYTES).decode(), "parameters": {"site_profile": fitted}}
    assert httpx.post(f"{url}/v1/classify", json=body, timeout=60).status_code == 200
    compared = httpx.post(f"{url}/v1/compare", json=body, timeout=120).raise_for_status().json()
    assert compared["threshold"] == fitted["threshold"]


def test_another_models_profile_is_409_naming_its_version(url, fitted):
    other = replace(SiteProfile.from_json(fitted), model_version="v0.0.1").to_json()  # well-formed, checksum right
    response = explain(url, {"site_profile": other})
    assert response.status_code == 409 and "fitted for model v0.0.1" in response.json()["error"]


def test_a_tampered_profile_is_400(url, fitted):
    response = explain(url, {"site_profile": {**fitted, "threshold": 0.01}})
    assert response.status_code == 400 and "changed after it was fitted" in response.json()["error"]


def test_evaluate_with_a_profile_reports_the_metrics_at_its_threshold(url, fitted, forty_normals):
    plain = httpx.post(f"{url}/v1/evaluate", content=forty_normals, headers=ZIP, timeout=120).raise_for_status().json()
    sited = httpx.post(f"{url}/v1/evaluate", params={"site_profile": json.dumps(fitted)}, content=forty_normals,
                       headers=ZIP, timeout=120).raise_for_status().json()
    assert sited["threshold"] == fitted["threshold"] and sited["site"] == "St Elsewhere"
    probabilities = [(row["label"], row["pneumonia_probability"]) for row in plain["images"]]
    negatives = [p for label, p in probabilities if label == "NORMAL"]
    assert sited["specificity"] == pytest.approx(sum(p < fitted["threshold"] for p in negatives) / len(negatives))
    assert [row["pneumonia_probability"] for row in sited["images"]] == [p for _, p in probabilities]


def test_a_copy_run_with_site_profile_answers_everything_at_its_threshold(fitted, tmp_path: Path, monkeypatch):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(fitted))
    monkeypatch.setenv("SITE_PROFILE", str(path))
    with app_with_unreachable_hub() as module, served(lambda port: module.create_server("127.0.0.1", port)) as site:
        info = httpx.get(f"{site}/v1/model", timeout=30).raise_for_status().json()
        assert info["site_profile"]["site"] == "St Elsewhere" and info["threshold"] == fitted["threshold"]
        assert explain(site, {}).raise_for_status().json()["threshold"] == fitted["threshold"]
