"""The page in French and English (gr.I18n and the visitor's Accept-Language): the real app in Chromium with the
browser's locale set to fr-FR and to en-US. The app is tests.browser_app's; nothing is written in the repository."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser_app import CHROMIUM, DESKTOP, headless_chromium, running_app
from tests.labelled_zips import KERMANY_TEST, zip_entries
from ui.messages import TABLES

UI_MS = 60_000
EVALUATION_MS = 120_000  # a first evaluation builds the batch graph, on a busy 2-core machine
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
    expect(page.get_by_role("button", name="Analyse")).to_be_visible()
    expect(page.locator("#examples-child")).to_contain_text("NORMAL, typical")
    assert "__i18n__" not in visible_text(page) and "Radiographie" not in visible_text(page)
    page.context.close()


def upload_zip(page: Page, archive: Path) -> None:
    page.locator("#your-data-zip input[type=file]").set_input_files(archive, timeout=UI_MS)
    expect(page.locator("#your-data-zip a").first).to_have_attribute(  # uploaded: the server holds it
        "href", re.compile(rf"/gradio_api/file=.*{re.escape(archive.name)}$"), timeout=UI_MS)


def test_a_french_browser_gets_the_your_data_tab_in_french(browser: Browser, app: str, tmp_path: Path) -> None:
    """The tab's fixed text, an evaluation's summary, the files not read with their reasons, and a refused zip."""
    entries = {f"{label}/{path.name}": path.read_bytes() for label in ("NORMAL", "PNEUMONIA")
               for path in sorted((KERMANY_TEST / label).iterdir())[:2]}
    archive = zip_entries(tmp_path / "service.zip", {**entries, "NORMAL/notes.jpg": b"these are my notes",
                                                     "NORMAL/readme.txt": b"scanned on Monday"})
    context = browser.new_context(locale="fr-FR", viewport=DESKTOP)
    page = context.new_page()
    page.goto(app)
    page.get_by_role("tab", name="Vos données").click()
    expect(page.get_by_role("button", name="Évaluer")).to_be_visible(timeout=UI_MS)
    assert "__i18n__" not in visible_text(page)
    upload_zip(page, archive)
    page.get_by_role("button", name="Évaluer").click()
    summary = page.locator("#your-data-summary")
    expect(summary).to_contain_text("4 images de service.zip évaluées", timeout=EVALUATION_MS)
    expect(page.locator("#your-data-summary")).to_contain_text("Sensibilité")
    expect(page.locator("#your-data-at-threshold")).to_contain_text("Au seuil de")
    skipped = page.locator("#your-data-skipped")
    expect(skipped).to_contain_text("pas une image, d'après son nom", timeout=UI_MS)
    expect(skipped).to_contain_text("raison")
    expect(skipped).to_contain_text("un fichier texte, pas une image")
    text = visible_text(page)
    assert "__i18n__" not in text
    shown = [phrase for phrase in english_phrases() if phrase in text]
    assert not shown, f"English on the French Your data tab: {shown}"

    page.reload()  # a fresh tab: the zip box still holds the first zip, kept for fitting a threshold
    page.get_by_role("tab", name="Vos données").click()
    upload_zip(page, zip_entries(tmp_path / "bad.zip", {"../NORMAL/a.jpg": b"x"}))
    page.get_by_role("button", name="Évaluer").click()
    expect(page.get_by_test_id("toast-body")).to_contain_text("chemin dangereux", timeout=UI_MS)
    page.context.close()
