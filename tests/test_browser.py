"""End to end: the real app in a subprocess, driven through Debian's Chromium with Playwright.

Saves docs/screenshot.png, the screenshot the README shows, and docs/explanation_lab.png.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from cxr_pneumonia.config import DEFAULT_DATA_DIR
from cxr_pneumonia.explain import METHODS
from cxr_pneumonia.imaging import ImageDecodeError, decode_image

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# The machine's closed network refuses Chromium's background connections: switch them off.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PNEUMONIA_IMAGE = DEFAULT_DATA_DIR / "test" / "PNEUMONIA" / "person100_bacteria_475.jpg"
NORMAL_IMAGE = DEFAULT_DATA_DIR / "test" / "NORMAL" / "IM-0001-0001.jpg"
STARTUP_SECONDS = 90
ANALYSIS_MS = 60_000  # the first analysis builds the TensorFlow graph on a busy 2-core machine
LAB_MS = 120_000  # the lab's first checks build the randomised model's graphs too
UI_MS = 20_000
PERCENT = r"\s*\d+(\.\d+)?\s*%"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    """Poll `url` until it answers 200; fail with the app's log if it dies or takes too long."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    pytest.fail(f"app.py did not serve {url} within {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Terminate the app, killing it if it does not exit within 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run `python app.py` offline on a free local port; yield its URL."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM}")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = tmp_path_factory.mktemp("app") / "app.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, process, log)
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser(app_url: str) -> Iterator[Browser]:
    """Debian's headless Chromium (never Playwright's download)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, app_url: str) -> Iterator[Page]:
    """A fresh tab on the app, wide enough for its two columns."""
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.goto(app_url)
    yield tab
    tab.close()


def image_tab(page: Page) -> Locator:
    """The panel of the "Image" tab, which holds the upload component."""
    return page.get_by_role("tabpanel").filter(has_text="Chest X-ray (JPEG, PNG")


def output_block(page: Page, label: str) -> Locator:
    """The component block whose floating label reads exactly `label`."""
    block_label = page.get_by_test_id("block-label").filter(has_text=re.compile(rf"^\s*{label}\s*$"))
    return page.locator("div.block").filter(has=block_label)


def upload(page: Page, path: Path) -> None:
    """Upload `path` in the Image tab and wait until the server holds it (its preview points there)."""
    panel = image_tab(page)
    panel.get_by_test_id("file-upload").set_input_files(path, timeout=UI_MS)
    expect(panel.locator("img")).to_have_attribute("src", re.compile(rf"/gradio_api/file=.*{re.escape(path.name)}$"),
                                                   timeout=UI_MS)


def analyze_and_expect_result(page: Page) -> None:
    """Click Analyze; wait for both probabilities, the decision sentence and a loaded heatmap."""
    page.get_by_role("button", name="Analyze").click()
    expect(page.locator("#decision")).to_contain_text("pneumonia probability", timeout=ANALYSIS_MS)
    probabilities = page.get_by_test_id("label")
    for label in ("PNEUMONIA", "NORMAL"):
        expect(probabilities.get_by_test_id(f"{label}-confidence-set")).to_have_text(
            re.compile(rf"^\s*{label}{PERCENT}$"), timeout=UI_MS)
    heatmap = output_block(page, "Heatmap").locator("img")
    expect(heatmap).to_have_attribute("src", re.compile(r"/gradio_api/file=.+\.jpe?g$"), timeout=UI_MS)
    expect(heatmap).to_have_js_property("complete", True, timeout=UI_MS)
    assert heatmap.evaluate("img => img.naturalWidth") > 0, "the heatmap image did not decode"


def test_analysis_shows_probabilities_decision_and_heatmap(page: Page, tmp_path: Path) -> None:
    """A real X-ray gets both probabilities, the decision and a heatmap; the screenshot is saved."""
    expect(page.locator("#disclaimer")).to_contain_text("not a medical device", timeout=UI_MS)
    expect(page.get_by_text("not a medical device")).to_be_visible()
    upload(page, PNEUMONIA_IMAGE)
    analyze_and_expect_result(page)
    expect(output_block(page, "Original").locator("img")).to_have_js_property("complete", True)
    expect(page.locator("#model-panel")).to_contain_text("Repository")
    docs = REPO_ROOT / "docs"
    docs.mkdir(exist_ok=True)
    for target in (docs / "screenshot.png", tmp_path / "screenshot.png"):
        page.screenshot(path=target, full_page=True)
        assert target.stat().st_size > 10_000


def test_unreadable_upload_shows_our_message_and_the_app_keeps_serving(page: Page, tmp_path: Path) -> None:
    """A text file named .png gets the decoder's own message as a toast, no traceback; then a real image works."""
    fake = tmp_path / "not_an_xray.png"
    fake.write_text("This is a note, not a chest X-ray.\n")
    with pytest.raises(ImageDecodeError) as expected:
        decode_image(fake.read_bytes(), fake.name)
    upload(page, fake)
    page.get_by_role("button", name="Analyze").click()
    toast = page.get_by_test_id("toast-body")
    expect(toast).to_contain_text(str(expected.value), timeout=ANALYSIS_MS)
    assert "is a text file, not an image" in str(expected.value)
    expect(page.locator("body")).not_to_contain_text("Traceback")
    image_tab(page).get_by_role("button", name="Remove Image").click()
    upload(page, NORMAL_IMAGE)
    analyze_and_expect_result(page)
    expect(page.locator("body")).not_to_contain_text("Traceback")


def magenta_pixels(page: Page, image: Locator) -> int:
    """How many pixels of a displayed image are the boxes' magenta (give or take JPEG's rounding)."""
    pixels = np.asarray(Image.open(BytesIO(page.request.get(image.get_attribute("src")).body())).convert("RGB"), int)
    return int(np.sum((pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] > 200)))


def expect_loaded_images(images: Locator, count: int) -> None:
    """Wait for `count` images in `images`, each loaded and decoded."""
    expect(images).to_have_count(count, timeout=LAB_MS)
    for index in range(count):
        expect(images.nth(index)).to_have_js_property("complete", True, timeout=UI_MS)
        assert images.nth(index).evaluate("img => img.naturalWidth") > 0


def test_explanation_lab_on_an_adult_example_with_boxes(page: Page) -> None:
    """Click an adult example with boxes, switch on the boxes and the comparison: four maps with the boxes
    drawn, and the sanity-check panel; docs/explanation_lab.png is saved."""
    expect(page.locator("#examples-child img")).not_to_have_count(0, timeout=UI_MS)
    adults = page.locator("#examples-adult")
    expect(adults).to_contain_text("the pneumonias have the radiologists' boxes")
    adults.get_by_text(re.compile(r"^\s*PNEUMONIA, \w+\s*$")).first.click()
    expect(image_tab(page).locator("img")).to_have_attribute(
        "src", re.compile(r"/gradio_api/file=.*rsna_pneumonia.*\.jpg$|/gradio_api/file=.*/[0-9a-f-]{36}\.jpg$"),
        timeout=UI_MS)
    page.get_by_label("Show the radiologists' boxes").check()
    analyze_and_expect_result(page)
    expect(page.locator("#decision")).to_contain_text("the radiologists' boxes", timeout=UI_MS)
    assert magenta_pixels(page, output_block(page, "Heatmap").locator("img")) > 100
    page.get_by_role("tab", name="Compare methods").click()
    maps = page.locator("#compare-maps img")
    expect_loaded_images(maps, len(METHODS))
    for method in METHODS:
        expect(page.locator("#compare-maps")).to_contain_text(f"{method}: ")
    assert all(magenta_pixels(page, maps.nth(index)) > 100 for index in range(len(METHODS)))
    sanity = page.locator("#sanity-check")
    expect(sanity).to_contain_text("Spearman", timeout=LAB_MS)
    expect(sanity).to_be_visible()
    for method in METHODS:
        expect(sanity).to_contain_text(re.compile(rf"{re.escape(method)}\s+-?\d\.\d\d\s+(passed|failed)"))
    expect_loaded_images(page.locator("#sanity-maps img"), 2 * len(METHODS))
    expect(page.locator("#faithfulness")).to_contain_text("deletion AUC", timeout=UI_MS)
    expect_loaded_images(page.locator("#faithfulness-curves img"), 1)  # the matplotlib figure
    page.wait_for_timeout(500)  # let the last images settle before the screenshot
    target = REPO_ROOT / "docs" / "explanation_lab.png"
    page.screenshot(path=target, full_page=True)
    assert target.stat().st_size > 10_000
