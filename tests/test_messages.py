"""The message tables: every key in both languages with the same fields, every key the code asks for present, and
the decoder's refusals told in French from their codes."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from cxr_pneumonia.imaging import ImageDecodeError, decode_image
from tests.test_browser_languages import english_phrases
from ui import render
from ui.messages import TABLES, language_of, text

UI_DIR = Path(__file__).resolve().parents[1] / "ui"
FIELDS = re.compile(r"\{(\w+)")
KEYS_IN_CODE = re.compile(r"""(?:text|fixed)\(f?["']([\w{}.\[\]]+)["']""")


def test_the_tables_have_the_same_keys_and_fields() -> None:
    """A missing translation fails here; text() never falls back to another language."""
    assert set(TABLES["en"]) == set(TABLES["fr"])
    for key, english in TABLES["en"].items():
        assert set(FIELDS.findall(english)) == set(FIELDS.findall(TABLES["fr"][key])), key
    with pytest.raises(KeyError):
        text("no-such-key", "fr")


def test_every_key_the_page_asks_for_is_in_the_tables() -> None:
    """The literal keys in ui/ (a key built with f"kind_{...}" is checked by its prefix)."""
    for path in UI_DIR.rglob("*.py"):
        for key in KEYS_IN_CODE.findall(path.read_text()):
            prefix = key.split("{")[0]
            assert any(name.startswith(prefix) if "{" in key else name == key for name in TABLES["en"]), (path, key)


@pytest.mark.parametrize("data, french", [
    (b"these are my notes, not an image", "un fichier texte, pas une image"),
    (b"", "Le fichier est vide."),
    (b"%PDF-1.4 something", "un document PDF"),
])
def test_the_decoders_refusals_are_told_in_french_from_their_code(data: bytes, french: str) -> None:
    with pytest.raises(ImageDecodeError) as refusal:
        decode_image(data, "patient-0815.png")
    assert french in render.decode_error_message(refusal.value, "fr")
    assert "patient-0815" not in render.decode_error_message(refusal.value, "en")


@pytest.mark.parametrize("header, language", [("fr-FR,fr;q=0.9,en;q=0.8", "fr"), ("fr", "fr"), ("en-US,fr;q=0.5", "en"),
                                              ("de-DE", "en"), ("", "en")])
def test_the_language_follows_the_browsers_first_choice(header: str, language: str) -> None:
    assert language_of(SimpleNamespace(headers={"accept-language": header})) == language


def test_the_french_scan_knows_the_english_sentences() -> None:
    phrases = english_phrases()
    assert any(phrase.startswith("The model sees signs of pneumonia") for phrase in phrases)
    assert "Upload a chest X-ray or click one of the examples first." in phrases
