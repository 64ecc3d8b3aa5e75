"""End to end: the real app in a subprocess, driven through Debian's Chromium with Playwright.

Saves docs/screenshot.png, the screenshot the README shows.
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
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from cxr_pneumonia.config import DEFAULT_DATA_DIR
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
