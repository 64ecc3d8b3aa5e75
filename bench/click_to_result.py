"""Click-to-result in the browser: the time from a click on an example to the decision and a loaded heatmap on
screen, over several clicks alternating between examples, in Chromium against `python app.py` (offline).

    nice -n 15 .venv/bin/python -m bench.click_to_result --clicks 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser_app import CHROMIUM, CHROMIUM_ARGS, DESKTOP, running_app

RESULTS = Path(__file__).parent / "results" / "click_to_result.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clicks", type=int, default=20)
    args = parser.parse_args(argv)
    seconds = []
    with tempfile.TemporaryDirectory() as workdir, running_app(Path(workdir), 30) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=DESKTOP)
        page.goto(url)
        thumbnails = page.locator("#examples-child .thumbnail-item")
        thumbnails.first.wait_for(timeout=60_000)
        for click in range(args.clicks + 1):  # the first click is a warm-up
            reference = page.locator("#reference").inner_text()
            item = thumbnails.nth(click % 2)
            item.scroll_into_view_if_needed()
            started = time.perf_counter()
            item.click()
            page.wait_for_function(
                """previous => {
                  const reference = document.querySelector('#reference');
                  const image = document.querySelector('#heatmap img');
                  return reference && reference.innerText !== previous && image && image.complete
                    && image.naturalWidth > 0;
                }""", arg=reference, timeout=60_000)
            if click:
                seconds.append(time.perf_counter() - started)
        browser.close()
    result = {"clicks": len(seconds), "median_ms": 1000 * statistics.median(seconds),
              "p90_ms": 1000 * sorted(seconds)[int(0.9 * len(seconds)) - 1], "max_ms": 1000 * max(seconds)}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
