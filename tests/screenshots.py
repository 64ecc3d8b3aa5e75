"""Screenshots for the README: `python -m tests.screenshots` writes docs/{result,refusal,lab}-{desktop,phone}.png
from the real app in Chromium. Not part of the test run, which never writes into the repository."""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from cxr_pneumonia.config import DEFAULT_DATA_DIR
from tests.browser_app import CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE, REPO_ROOT, running_app

DOCS = REPO_ROOT / "docs"
KNEE = next(iter(sorted((DEFAULT_DATA_DIR.parent / "other_radiographs" / "knee").iterdir())))
WAIT_MS = 120_000


def shoot(page: Page, name: str, full_page: bool = False) -> None:
    page.wait_for_timeout(800)  # let the images settle
    page.screenshot(path=DOCS / f"{name}.png", full_page=full_page)
    print(f"wrote docs/{name}.png")


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir, running_app(Path(workdir), 60) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page = browser.new_page(viewport=viewport)
            page.goto(url)
            page.locator("#examples-adult .thumbnail-item").nth(3).click(timeout=WAIT_MS)
            page.locator("#decision").get_by_text("The model").wait_for(timeout=WAIT_MS)
            shoot(page, f"result-{size}")
            page.get_by_role("tab", name="Explanation lab").click()
            page.locator("#faithfulness").get_by_text("deletion AUC").wait_for(timeout=WAIT_MS)
            shoot(page, f"lab-{size}", full_page=True)
            page.get_by_role("tab", name="Result").click()
            page.locator("#image-input").get_by_role("button", name="Remove Image").click()
            page.locator("#image-input input[type=file]").set_input_files(KNEE)
            page.locator("#decision").get_by_text("upload a frontal").wait_for(timeout=WAIT_MS)
            shoot(page, f"refusal-{size}")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
