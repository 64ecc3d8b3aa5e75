"""Screenshots for the README: `python -m tests.screenshots` writes docs/{result,refusal,lab}-{desktop,phone}.png
and docs/result-fr-{desktop,phone}.png (the page in a French browser) from the real app in Chromium. Not part of
the test run, which never writes into the repository."""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from cxr_pneumonia.config import DEFAULT_DATA_DIR
from tests.browser_app import DESKTOP, PHONE, REPO_ROOT, headless_chromium, running_app

DOCS = REPO_ROOT / "docs"
KNEE = next(iter(sorted((DEFAULT_DATA_DIR.parent / "other_radiographs" / "knee").iterdir())))
WAIT_MS = 120_000


def shoot(page: Page, name: str, full_page: bool = False) -> None:
    """A screenshot once the images have settled, the mouse out of the way (a hovered thumbnail is outlined)."""
    page.mouse.move(0, 0)
    page.wait_for_timeout(800)
    page.screenshot(path=DOCS / f"{name}.png", full_page=full_page)
    print(f"wrote docs/{name}.png")


def open_example(browser: Browser, url: str, viewport: dict, locale: str) -> Page:
    """A page in a browser speaking `locale`, an adult pneumonia example analysed and in view."""
    page = browser.new_context(locale=locale, viewport=viewport).new_page()
    page.goto(url)
    page.locator("#examples-adult .thumbnail-item").nth(3).click(timeout=WAIT_MS)
    expect(page.locator("#reference")).not_to_have_text("", timeout=WAIT_MS)
    expect(page.locator("#decision")).to_be_in_viewport(timeout=WAIT_MS)
    return page


def english_pages(browser: Browser, url: str, size: str, viewport: dict) -> None:
    """The result, the lab and a refusal, in English."""
    page = open_example(browser, url, viewport, "en-US")
    shoot(page, f"result-{size}")
    page.get_by_role("tab", name="Explanation lab").click()
    page.locator("#faithfulness").get_by_text("deletion AUC").wait_for(timeout=WAIT_MS)
    shoot(page, f"lab-{size}", full_page=True)
    page.get_by_role("tab", name="Result").click()
    page.locator("#image-input").get_by_role("button", name="Remove Image").click()
    page.locator("#image-input input[type=file]").set_input_files(KNEE)
    expect(page.locator("#decision")).to_contain_text("upload a frontal", timeout=WAIT_MS)
    expect(page.locator("#decision")).to_be_in_viewport(ratio=1, timeout=WAIT_MS)
    shoot(page, f"refusal-{size}")
    page.context.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir, running_app(Path(workdir), 60) as url, \
            headless_chromium() as browser:
        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            english_pages(browser, url, size, viewport)
            page = open_example(browser, url, viewport, "fr-FR")
            shoot(page, f"result-fr-{size}")
            page.context.close()


if __name__ == "__main__":
    main()
