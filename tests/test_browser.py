"""End to end: the real app in a subprocess (tests.browser_app), driven through Debian's Chromium with Playwright,
at a desktop and a phone size. Writes nothing in the repository: screenshots are `python -m tests.screenshots`."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from cxr_pneumonia.config import DEFAULT_DATA_DIR
from cxr_pneumonia.explain import METHODS
from tests.browser_app import CHROMIUM, DESKTOP, PHONE, headless_chromium, running_app

PNEUMONIA_IMAGE = DEFAULT_DATA_DIR / "test" / "PNEUMONIA" / "person100_bacteria_475.jpg"
NORMAL_IMAGE = DEFAULT_DATA_DIR / "test" / "NORMAL" / "IM-0001-0001.jpg"
KNEE = next(iter(sorted((DEFAULT_DATA_DIR.parent / "other_radiographs" / "knee").iterdir())))
RETENTION_SECONDS = 3.0
ANSWER_MS = 4_000  # the answer must be in view this soon after the click or the upload
LAB_MS = 120_000  # the lab's first checks build the randomised model's graphs
UI_MS = 20_000
ANSWERED = re.compile(r"The model (sees|cannot tell)")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The app's URL and its working folder (Gradio's files in gradio/, its log in app.log)."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM}")
    workdir = tmp_path_factory.mktemp("app")
    with running_app(workdir, RETENTION_SECONDS) as url:
        yield url, workdir


@pytest.fixture(scope="module")
def browser(app) -> Iterator[Browser]:
    with headless_chromium() as chromium:
        yield chromium


def open_page(browser: Browser, url: str, viewport: dict) -> Page:
    """A fresh tab on the app at `viewport`, its examples loaded."""
    tab = browser.new_page(viewport=viewport)
    tab.goto(url)
    expect(tab.locator("#examples-child img")).not_to_have_count(0, timeout=UI_MS)
    return tab


@pytest.fixture(params=[DESKTOP, PHONE], ids=["desktop", "phone"])
def page(request, browser: Browser, app) -> Iterator[Page]:
    tab = open_page(browser, app[0], request.param)
    yield tab
    tab.close()


@pytest.fixture
def desktop(browser: Browser, app) -> Iterator[Page]:
    tab = open_page(browser, app[0], DESKTOP)
    yield tab
    tab.close()


def in_viewport(page: Page, locator: Locator) -> bool:
    """True when the element's bounding box lies wholly inside the window."""
    box = locator.bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= size["height"] \
        and box["x"] + box["width"] <= size["width"]


def expect_answer_in_view(page: Page, started: float) -> None:
    """The decision and the loaded heatmap inside the viewport within ANSWER_MS of `started`."""
    decision, heatmap = page.locator("#decision"), page.locator("#heatmap")
    expect(decision).to_contain_text(ANSWERED, timeout=ANSWER_MS)
    images = heatmap.locator("img")
    expect(images).not_to_have_count(0, timeout=ANSWER_MS)
    while time.monotonic() - started < ANSWER_MS / 1000:
        if in_viewport(page, decision) and in_viewport(page, heatmap) and images.first.evaluate(
                "img => img.complete && img.naturalWidth > 0"):
            return
        page.wait_for_timeout(50)
    pytest.fail(f"not in view after {ANSWER_MS} ms: decision {decision.bounding_box()}, heatmap "
                f"{heatmap.bounding_box()}, viewport {page.viewport_size}")


def upload(page: Page, path: Path, target: str = "#image-input") -> None:
    """Put `path` into the image input (or the file input)."""
    page.locator(f"{target} input[type=file]").set_input_files(path, timeout=UI_MS)


def test_one_click_on_an_example_puts_the_answer_and_the_heatmap_in_view(page: Page) -> None:
    thumbnail = page.locator("#examples-adult .thumbnail-item").first
    thumbnail.scroll_into_view_if_needed()
    started = time.monotonic()
    thumbnail.click()
    expect_answer_in_view(page, started)
    expect(page.locator("#reference")).to_contain_text("Radiologists' label: NORMAL, RSNA test split")


def test_an_upload_puts_the_answer_and_the_heatmap_in_view(page: Page) -> None:
    started = time.monotonic()
    upload(page, PNEUMONIA_IMAGE)
    expect_answer_in_view(page, started)
    expect(page.locator("#probabilities")).to_contain_text("PNEUMONIA")
    expect(page.locator("#reference")).to_have_text("")


def test_the_answer_is_for_the_image_on_screen_not_a_file_left_in_the_other_input(desktop: Page) -> None:
    """A knee left in the file tab, then a chest X-ray put in the image tab: the file input is emptied and the
    answer is the chest X-ray's."""
    desktop.get_by_role("tab", name="DICOM or other file").click()
    upload(desktop, KNEE, "#file-input")
    expect(desktop.locator("#decision")).to_contain_text("upload a frontal", timeout=UI_MS)
    desktop.get_by_role("tab", name="Image", exact=True).click()
    upload(desktop, NORMAL_IMAGE)
    expect(desktop.locator("#decision")).to_contain_text(ANSWERED, timeout=UI_MS)
    desktop.get_by_role("tab", name="DICOM or other file").click()
    expect(desktop.locator("#file-input")).not_to_contain_text(KNEE.name)
    desktop.get_by_role("button", name="Analyse").click()  # Analyse again: still the image on screen
    expect(desktop.locator("#decision")).to_contain_text(ANSWERED, timeout=UI_MS)


def test_a_refusal_is_in_view_after_the_upload(page: Page) -> None:
    upload(page, KNEE)
    expect(page.locator("#decision")).to_contain_text("upload a frontal", timeout=UI_MS)
    expect(page.locator("#decision")).to_be_in_viewport(ratio=1, timeout=ANSWER_MS)


def test_a_refusal_is_one_plain_sentence_with_the_scores_in_closed_details(desktop: Page) -> None:
    upload(desktop, KNEE)
    decision = desktop.locator("#decision")
    expect(decision).to_have_text(re.compile(r"^\s*This looks like .+, not a frontal chest X-ray: upload a frontal "
                                             r"\(PA or AP\) chest X-ray\.\s*$"), timeout=UI_MS)
    expect(desktop.locator("#details")).to_be_hidden()  # in the closed accordion
    desktop.get_by_text("Details: scores and threshold").click()
    expect(desktop.locator("#details")).to_contain_text("Input gate:")


def test_an_unreadable_upload_clears_the_result_and_leaves_no_error_badge(desktop: Page, tmp_path: Path) -> None:
    upload(desktop, NORMAL_IMAGE)
    expect(desktop.locator("#decision")).to_contain_text(ANSWERED, timeout=UI_MS)
    desktop.locator("#image-input").get_by_role("button", name="Remove Image").click()
    fake = tmp_path / "not_an_xray.png"
    fake.write_text("This is a note, not a chest X-ray.\n")
    upload(desktop, fake)
    expect(desktop.locator("#decision")).to_contain_text("is a text file, not an image", timeout=UI_MS)
    expect(desktop.locator("#heatmap img")).to_have_count(0)
    expect(desktop.locator("#probabilities")).to_be_hidden()  # no answer: no empty box left as if one loaded
    expect(desktop.locator(".error")).to_have_count(0)
    expect(desktop.locator("body")).not_to_contain_text("Traceback")


def test_after_an_adult_example_no_child_thumbnail_is_or_looks_selected(desktop: Page) -> None:
    """The page scrolls to the answer, leaving the mouse over a child thumbnail: it must not look selected."""
    desktop.locator("#examples-adult .thumbnail-item").nth(3).click()
    expect(desktop.locator("#reference")).to_contain_text("PNEUMONIA, RSNA test split", timeout=UI_MS)
    expect(desktop.locator("#examples-child .thumbnail-item.selected")).to_have_count(0)
    selected = desktop.locator("#examples-adult .thumbnail-item.selected")
    expect(selected).to_have_count(1)
    look = "item => { const style = getComputedStyle(item); return style.borderColor + ' ' + style.boxShadow; }"
    selected_look = selected.evaluate(look)
    children = desktop.locator("#examples-child .thumbnail-item")
    for index in range(children.count()):
        children.nth(index).hover()
        assert children.nth(index).evaluate(look) != selected_look, f"child thumbnail {index} looks selected"


def test_the_galleries_show_the_selected_example_only(desktop: Page) -> None:
    desktop.locator("#examples-child .thumbnail-item").first.click()
    expect(desktop.locator("#reference")).to_contain_text("Radiologists' label: NORMAL, Kermany test split",
                                                          timeout=UI_MS)
    expect(desktop.locator("#examples-child .thumbnail-item.selected")).to_have_count(1)
    desktop.locator("#examples-adult .thumbnail-item").nth(3).click()
    expect(desktop.locator("#reference")).to_contain_text("PNEUMONIA, RSNA test split", timeout=UI_MS)
    expect(desktop.locator("#examples-child .thumbnail-item.selected")).to_have_count(0)
    expect(desktop.locator("#examples-adult .thumbnail-item.selected")).to_have_count(1)
    upload(desktop, NORMAL_IMAGE)
    expect(desktop.locator("#reference")).to_have_text("", timeout=UI_MS)
    expect(desktop.locator(".example-gallery .thumbnail-item.selected")).to_have_count(0)


def test_an_upload_and_the_images_made_from_it_leave_the_disk(desktop: Page, app, tmp_path: Path) -> None:
    """A file with a distinctive name: after the answer and the retention time, neither it nor the images shown
    are on disk, and its name is in no output path and not in the log."""
    _, workdir = app
    distinctive = tmp_path / "patient-4711-doe-jane.jpg"
    shutil.copy(NORMAL_IMAGE, distinctive)
    upload(desktop, distinctive)
    expect(desktop.locator("#decision")).to_contain_text(ANSWERED, timeout=UI_MS)
    shown = [desktop.locator("#heatmap img").nth(index).get_attribute("src") for index in range(2)]
    assert all("patient-4711" not in source for source in shown)
    paths = [Path(re.sub(r"^.*?/gradio_api/file=", "", source)) for source in shown]
    assert all(path.is_file() for path in paths)
    time.sleep(RETENTION_SECONDS + 2)
    left = [path for path in (workdir / "gradio").rglob("*") if "patient-4711" in path.name]
    assert not left, left
    assert not any(path.exists() for path in paths)
    assert "patient-4711" not in (workdir / "app.log").read_text()


def test_the_lab_shows_every_map_with_a_complete_caption(desktop: Page) -> None:
    desktop.locator("#examples-adult .thumbnail-item").nth(3).click()
    expect(desktop.locator("#decision")).to_contain_text(ANSWERED, timeout=UI_MS)
    desktop.get_by_role("tab", name="Explanation lab").click()
    expect(desktop.locator("#faithfulness")).to_contain_text("deletion AUC", timeout=LAB_MS)
    maps = desktop.locator("#compare-maps img")
    expect(maps).to_have_count(2 * len(METHODS), timeout=UI_MS)
    captions = desktop.locator("#compare-maps .prose.map-caption")
    for index, method in enumerate(METHODS):
        expect(captions.nth(index)).to_contain_text(
            re.compile(rf"{re.escape(method)}: \d+ ms; peak (inside|outside) the boxes, \d+ % .*rho -?\d\.\d\d, "
                       r"(passes|fails)"), timeout=LAB_MS)
    first_row = [maps.nth(2 * index).bounding_box() for index in range(len(METHODS))]
    assert len({round(box["y"]) for box in first_row}) == 1, "the four maps are not side by side"
    assert all(box["x"] + box["width"] <= DESKTOP["width"] for box in first_row)
    expect(desktop.locator("#sanity-check")).to_contain_text("Spearman")
    expect(desktop.locator("#faithfulness-curves img")).to_have_count(1)
