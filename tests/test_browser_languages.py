"""The page in French and English (gr.I18n and the visitor's Accept-Language): the real app in Chromium with the
browser's locale set to fr-FR and to en-US. The app is tests.browser_app's; nothing is written in the repository."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser_app import CHROMIUM, DESKTOP, headless_chromium, running_app
from ui.messages import TABLES

UI_MS = 60_000
MARKDOWN = re.compile(r"[*_`#]|\[|\]\(.*?\)")
SHORTEST_CHECKED = 12  # shorter messages ("Image", "AUC {auc}") may be the same word in both languages


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM}")
    with running_app(tmp_path_factory.mktemp("app")) as url:
        yield url


@pytest.fixture(scope="module")
def browser(app) -> Iterator[Browser]:
    with headless_chromium() as chromium:
        yield chromium


def page_in(browser: Browser, url: str, locale: str) -> Page:
    """The page in a browser whose language is `locale`, an adult pneumonia example analysed."""
    context = browser.new_context(locale=locale, viewport=DESKTOP)
    page = context.new_page()
    page.goto(url)
    expect(page.locator("#examples-adult .thumbnail-item")).not_to_have_count(0, timeout=UI_MS)
    page.locator("#examples-adult .thumbnail-item").nth(3).click()
    expect(page.locator("#reference")).not_to_have_text("", timeout=UI_MS)
    return page


def english_phrases() -> list[str]:
    """The English messages, without Markdown and cut at their first field, that French never uses."""
    french = " ".join(TABLES["fr"].values())
    phrases = {MARKDOWN.sub("", message.split("{")[0]).strip() for message in TABLES["en"].values()}
    return sorted(phrase for phrase in phrases if len(phrase) >= SHORTEST_CHECKED and phrase not in french)


def visible_text(page: Page) -> str:
    """Everything the page shows, with the accordions' text (open or closed) and the window's title."""
    return page.title() + "\n" + page.locator("body").inner_text() + "\n" + " ".join(
        page.locator(".prose").all_text_contents())


def test_a_french_browser_gets_the_page_in_french(browser: Browser, app: str) -> None:
    page = page_in(browser, app, "fr-FR")
    expect(page.locator("h1")).to_have_text("Radiographie thoracique : pneumonie ou normale ?")
    expect(page.locator("#decision")).to_contain_text("pneumonie", timeout=UI_MS)
    expect(page.locator("#decision")).to_contain_text("Le modèle")
    expect(page.locator("#reference")).to_contain_text("Diagnostic des radiologues : PNEUMONIE, jeu de test RSNA")
    expect(page.get_by_role("button", name="Analyser")).to_be_visible()
    expect(page.locator("#examples-child")).to_contain_text("NORMALE, typique")
    text = visible_text(page)
    assert "__i18n__" not in text
    shown = [phrase for phrase in english_phrases() if phrase in text]
    assert not shown, f"English on the French page: {shown}"
    page.context.close()


def test_an_english_browser_gets_the_same_page_in_english(browser: Browser, app: str) -> None:
    page = page_in(browser, app, "en-US")
    expect(page.locator("h1")).to_have_text("Chest X-ray: pneumonia or normal?")
    expect(page.locator("#decision")).to_contain_text("The model sees signs of pneumonia", timeout=UI_MS)
    expect(page.locator("#reference")).to_contain_text("Radiologists' label: PNEUMONIA, RSNA test split")
    expect(page.get_by_role("button", name="Analyze")).to_be_visible()
    expect(page.locator("#examples-child")).to_contain_text("NORMAL, typical")
    assert "__i18n__" not in visible_text(page) and "Radiographie" not in visible_text(page)
    page.context.close()
