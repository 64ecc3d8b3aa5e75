"""The page end to end in Chromium (English and French, desktop and phone): a site threshold fitted, used, dropped
and loaded again; the prevalence control typed into; the lab started from its own tab; the plots of "Your data"
whole; decimal commas in French; a picture in strong colours refused. The app is tests.browser_app's."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from cxr_pneumonia.explain import METHODS
from tests import test_browser_languages
from tests.browser_app import DESKTOP, PHONE
from tests.labelled_zips import labelled_folder, zip_folder
from tests.test_browser import ANSWER_MS, LAB_MS, UI_MS
from tests.test_imaging import saturated_shapes

FIT_MS = 120_000  # 40 images scored, the first batch building the graph, on a busy 2-core machine
WORDS = {
    "en-US": {"your_data": "Your data", "fit": "Fit a threshold", "use": "Use it on this page",
              "own": "Use the model's own threshold", "result": "Result", "at_site": "At the threshold fitted for",
              "prevalence": "At a prevalence of 5 %", "lab": "Explanation lab", "explain": "Explain",
              "not_xray": "not an X-ray", "evaluate": "Evaluate"},
    "fr-FR": {"your_data": "Vos données", "fit": "Ajuster un seuil", "use": "L'utiliser sur cette page",
              "own": "Revenir au seuil du modèle", "result": "Résultat", "at_site": "Au seuil ajusté pour",
              "prevalence": "prévalence de 5\u202f%", "lab": "Explications", "explain": "Expliquer",
              "not_xray": "ce n'est pas une radiographie", "evaluate": "Évaluer"},
}


app, browser = test_browser_languages.app, test_browser_languages.browser  # the app and Chromium fixtures


def open_page(browser: Browser, url: str, locale: str, viewport: dict, accept_downloads: bool = False) -> Page:
    context = browser.new_context(locale=locale, viewport=viewport, accept_downloads=accept_downloads)
    page = context.new_page()
    page.goto(url)
    expect(page.locator("#examples-adult .thumbnail-item")).not_to_have_count(0, timeout=UI_MS)
    return page


@pytest.fixture(scope="module")
def forty_normals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zip of 40 normal Kermany test X-rays (and no pneumonia)."""
    root = tmp_path_factory.mktemp("normals")
    folder = labelled_folder(root / "st_elsewhere", per_class=40)
    for extra in (folder / "PNEUMONIA").iterdir():
        extra.unlink()
    return zip_folder(folder, root / "st_elsewhere.zip")


def seen_together(page: Page, *locators) -> bool:
    """True when every element lies inside the window at once (to the pixel: scrolling leaves fractions)."""
    height, width = page.viewport_size["height"], page.viewport_size["width"]
    boxes = [locator.bounding_box() for locator in locators]
    return all(box is not None and box["y"] >= -1 and box["x"] >= -1 and box["y"] + box["height"] <= height + 1
               and box["x"] + box["width"] <= width + 1 for box in boxes)


def threshold_shown(page: Page) -> str:
    """The fitted threshold as the page writes it ("12.3 %" or "12,3 %")."""
    match = re.search(r"(\d+[.,]\d) ?\u202f?%", page.locator("#site-fitted").inner_text())
    assert match, page.locator("#site-fitted").inner_text()
    return match.group(1)


@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_a_site_threshold_is_fitted_used_dropped_and_loaded_again(browser: Browser, app: str, forty_normals: Path,
                                                                   locale: str, tmp_path: Path) -> None:
    words = WORDS[locale]
    page = open_page(browser, app, locale, DESKTOP, accept_downloads=True)
    page.get_by_role("tab", name=words["your_data"]).click()
    page.locator("#your-data-zip input[type=file]").set_input_files(forty_normals, timeout=UI_MS)
    expect(page.locator("#your-data-zip")).to_contain_text("st_elsewhere", timeout=UI_MS)
    page.locator("#site-name textarea, #site-name input").first.fill("St Elsewhere")
    page.get_by_role("button", name=words["fit"], exact=True).click()
    expect(page.locator("#site-fitted")).to_contain_text("St Elsewhere", timeout=FIT_MS)
    fitted = threshold_shown(page)
    with page.expect_download(timeout=UI_MS) as download:
        page.locator("#site-download").click()
    saved = tmp_path / "profile.json"
    download.value.save_as(saved)
    assert json.loads(saved.read_text())["site"] == "St Elsewhere"

    page.get_by_role("button", name=words["use"]).click()
    expect(page.locator("#site-note")).to_contain_text("St Elsewhere", timeout=UI_MS)
    page.locator("#examples-adult .thumbnail-item").first.click()
    decision = page.locator("#decision")
    expect(decision).to_contain_text(words["at_site"], timeout=UI_MS)
    expect(decision).to_contain_text("St Elsewhere")
    expect(decision).to_contain_text(f"{fitted}")

    page.get_by_role("button", name=words["own"]).click()  # one click back to the model's own threshold
    expect(page.locator("#site-row")).to_be_hidden(timeout=UI_MS)
    expect(decision).not_to_contain_text(words["at_site"], timeout=UI_MS)

    page.get_by_role("tab", name=words["your_data"]).click()
    page.locator("#site-upload input[type=file]").set_input_files(saved, timeout=UI_MS)
    expect(page.locator("#site-fitted")).to_contain_text("St Elsewhere", timeout=UI_MS)
    assert threshold_shown(page) == fitted  # the downloaded profile gives the same threshold
    page.context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_typing_5_in_the_prevalence_control_shows_5_percent_beside_it(browser: Browser, app: str, locale: str,
                                                                       viewport: dict) -> None:
    page = open_page(browser, app, locale, viewport)
    page.locator("#examples-adult .thumbnail-item").nth(3).click()
    expect(page.locator("#prevalence-result")).not_to_have_text("", timeout=UI_MS)
    field = page.locator("#prevalence input[type=number]")
    field.fill("5")
    field.press("Enter")
    sentence = page.locator("#prevalence-result")
    expect(sentence).to_contain_text(WORDS[locale]["prevalence"], timeout=ANSWER_MS)
    sentence.evaluate("element => element.scrollIntoView({block: 'start'})")  # the sentence at the window's top
    assert seen_together(page, sentence, field), "the sentence is not in view with its control"
    expect(page.get_by_test_id("toast-body")).to_have_count(0)
    expect(page.locator(".error")).to_have_count(0)
    field.fill("500")  # out of range: brought to 99, never an error
    field.press("Enter")
    expect(sentence).to_contain_text("99", timeout=ANSWER_MS)
    expect(page.get_by_test_id("toast-body")).to_have_count(0)
    page.context.close()


@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_the_lab_runs_from_its_own_tab_on_an_example(browser: Browser, app: str, locale: str) -> None:
    words = WORDS[locale]
    page = open_page(browser, app, locale, DESKTOP)
    page.get_by_role("tab", name=words["lab"]).click()
    page.locator("#lab-example input").click()
    page.get_by_role("option").nth(9).click()  # the typical adult pneumonia, with the radiologists' boxes
    page.get_by_role("button", name=words["explain"], exact=True).click()
    expect(page.locator("#compare-maps img")).to_have_count(2 * len(METHODS), timeout=LAB_MS)
    expect(page.locator("#faithfulness")).not_to_have_text("", timeout=LAB_MS)
    expect(page.locator("#sanity-check")).to_contain_text("Spearman", timeout=LAB_MS)
    page.context.close()


def test_the_your_data_plot_titles_are_not_covered(browser: Browser, app: str, tmp_path: Path) -> None:
    for locale in ("en-US", "fr-FR"):
        page = open_page(browser, app, locale, DESKTOP)
        page.get_by_role("tab", name=WORDS[locale]["your_data"]).click()
        archive = zip_folder(labelled_folder(tmp_path / locale / "ward", per_class=6), tmp_path / f"{locale}.zip")
        page.locator("#your-data-zip input[type=file]").set_input_files(archive, timeout=UI_MS)
        expect(page.locator("#your-data-zip")).to_contain_text(archive.stem, timeout=UI_MS)
        page.get_by_role("button", name=WORDS[locale]["evaluate"]).click()
        for plot in ("#your-data-confusion", "#your-data-roc", "#your-data-reliability"):
            image = page.locator(f"{plot} img")
            expect(image).to_have_js_property("complete", True, timeout=FIT_MS)
            labels = page.locator(f"{plot} [data-testid='block-label'], {plot} label")
            box = image.bounding_box()
            for index in range(labels.count()):
                if labels.nth(index).is_visible():
                    label = labels.nth(index).bounding_box()
                    overlaps = label["y"] < box["y"] + 0.12 * box["height"] and label["y"] + label["height"] > box["y"]
                    assert not overlaps, f"{plot}: a label lies over the figure's title ({locale})"
        page.context.close()


def test_the_french_page_writes_decimal_commas(browser: Browser, app: str) -> None:
    page = open_page(browser, app, "fr-FR", DESKTOP)
    page.locator("#examples-adult .thumbnail-item").nth(3).click()
    expect(page.locator("#decision")).not_to_have_text("", timeout=UI_MS)
    page.get_by_text("Détails : scores et seuil").click()
    details = page.locator("#details")
    expect(details).to_contain_text(re.compile(r"\d,\d\s%"), timeout=UI_MS)
    assert not re.search(r"\d\.\d", details.inner_text()), details.inner_text()
    page.context.close()


@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_a_picture_in_strong_colours_is_refused_as_not_an_x_ray(browser: Browser, app: str, locale: str,
                                                                  tmp_path: Path) -> None:
    page = open_page(browser, app, locale, DESKTOP)
    picture = tmp_path / "shapes.png"
    picture.write_bytes(saturated_shapes())
    page.locator("#image-input input[type=file]").set_input_files(picture, timeout=UI_MS)
    expect(page.locator("#decision")).to_contain_text(WORDS[locale]["not_xray"], timeout=UI_MS)
    expect(page.locator("#heatmap img")).to_have_count(0)
    page.context.close()


def test_saturated_shapes_are_in_colour() -> None:
    """The picture the refusal test uploads really is in strong colours (not a grey image by accident)."""
    hsv = Image.open(io.BytesIO(saturated_shapes())).convert("HSV")
    assert sum(1 for _, s, _ in hsv.getdata() if s > 200) > 0.3 * hsv.width * hsv.height
