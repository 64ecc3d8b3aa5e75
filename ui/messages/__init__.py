"""Every string the page shows, one table per language (en.py, fr.py, same keys). The page's fixed text goes to
the browser through gr.I18n, which picks the visitor's language; the text made for each answer is written here in
the language the request asks for. A key missing from a table is an error, never a silent fallback."""

from __future__ import annotations

import numbers
import string
from collections.abc import Callable

import gradio as gr
from gradio.i18n import I18nData

from ui.messages import en, fr

TABLES: dict[str, dict[str, str]] = {"en": en.MESSAGES, "fr": fr.MESSAGES}
DEFAULT_LANGUAGE = "en"
# Gradio's own interface words that the page says in its own way: Gradio's key -> ours.
GRADIO_WORDS = {"upload_text.click_to_upload": "gradio_click_to_upload"}


NARROW_SPACE = "\u202f"  # French puts it between thousands and before "%"


class LocalFormatter(string.Formatter):
    """str.format with numbers written the language's way: in French a decimal comma, a narrow no-break space
    between thousands and before the percent sign (0,47; 1 234; 89 %)."""

    def __init__(self, language: str):
        super().__init__()
        self.language = language

    def format_field(self, value: object, format_spec: str) -> str:
        formatted = super().format_field(value, format_spec)
        if self.language != "fr" or isinstance(value, bool) or not isinstance(value, numbers.Number):
            return formatted
        formatted = formatted.replace(",", NARROW_SPACE).replace(".", ",")
        return formatted[:-1] + NARROW_SPACE + "%" if formatted.endswith("%") else formatted



def text(key: str, language: str, **values: object) -> str:
    """The message `key` in `language` with `values` filled in, numbers written the language's way; KeyError when
    that table lacks it."""
    message = TABLES[language][key]
    return LocalFormatter(language).format(message, **values) if values else message


def counted(key: str, count: int, language: str) -> str:
    """`key`, or its `_one` form where the language puts `count` in the singular (French: 0 and 1) and the table
    has one."""
    singular = count in (0, 1) if language == "fr" else count == 1
    return f"{key}_one" if singular and f"{key}_one" in TABLES[language] else key


def number(value: float, format_spec: str, language: str) -> str:
    """One number written the language's way (see LocalFormatter)."""
    return LocalFormatter(language).format_field(value, format_spec)


def language_of(request: gr.Request | None) -> str:
    """The page's language for a request: French when the browser's first language is fr-*, else English
    (the same choice gr.I18n makes from the browser's language)."""
    header = request.headers.get("accept-language", "") if request is not None else ""
    first = header.split(",")[0].split(";")[0].strip().lower()
    return "fr" if first == "fr" or first.startswith("fr-") else DEFAULT_LANGUAGE


class FixedText:
    """The page's fixed text for gr.I18n: each message used is filled in for every language and named by a key."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, str]] = {language: {} for language in TABLES}

    def __call__(self, key: str, **values: object) -> I18nData:
        """The message `key`, filled in with `values`, as a translation the browser looks up."""
        name = key if not values else "_".join([key, *(str(value) for value in values.values())])
        name = name.replace(".", "_")  # the browser's i18n library reads dots as nesting
        for language, table in self.tables.items():
            table[name] = text(key, language, **values)
        return I18nData(name)

    def made(self, name: str, make: Callable[[str], str]) -> I18nData:
        """Text made from the tables by `make(language)` (the initial model panel, say), as a translation."""
        for language, table in self.tables.items():
            table[name] = make(language)
        return I18nData(name)

    def i18n(self) -> gr.I18n:
        """The translations of every message used so far, and ours of Gradio's own words where its read wrong
        (its French "télécharger", download, on an upload box)."""
        return gr.I18n(**{language: {**table, **{gradio_key: TABLES[language][key]
                                                 for gradio_key, key in GRADIO_WORDS.items()}}
                          for language, table in self.tables.items()})
