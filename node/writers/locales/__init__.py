"""Translations of the summary image and PDF report, kept as data (one YAML file a language).

Every language has exactly the keys of English, so a missing translation fails when the
locale is loaded (and in the tests), not half-way through drawing a report. Another room's
report (the MRI summary) keeps its own strings the same way, in its own package:
:func:`load_catalogue`.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

import yaml

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "Locale", "load_catalogue", "load_locale"]

DEFAULT_LANGUAGE: Final = "en"
#: Languages shipped, by ISO 639-1 code: English, Russian, Kazakh.
LANGUAGES: Final = ("en", "ru", "kk")


@dataclass(frozen=True)
class Locale:
    """The strings of one language; :meth:`text` fills in ``{name}`` fields."""

    language: str
    strings: Mapping[str, str]

    def text(self, key: str, **fields: object) -> str:
        try:
            template = self.strings[key]
        except KeyError:
            raise KeyError(f"no string {key!r} in locale {self.language!r}") from None
        return template.format(**fields) if fields else template

    def number(self, value: float, decimals: int = 1) -> str:
        """``value`` with the language's decimal separator (12.5 in English, 12,5 in Russian)."""
        return f"{value:.{decimals}f}".replace(".", self.strings["decimal_separator"])

    def percent(self, probability: float) -> str:
        return f"{self.number(100.0 * probability)}%"

    def score(self, probability: float, decimals: int = 1) -> str:
        """A model score as a reader should see it: "> 99%" and "< 1%" at the ends, where
        more digits would claim a certainty the model does not have ("100.0%")."""
        if probability > 0.99:
            return "> 99%"
        if probability < 0.01:
            return "< 1%"
        return f"{self.number(100.0 * probability, decimals)}%"


def _read(package: str, language: str) -> dict[str, str]:
    text = resources.files(package).joinpath(f"{language}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"locale file {language}.yaml must map string keys to string values")
    return data


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def load_locale(language: str = DEFAULT_LANGUAGE) -> Locale:
    """The strings of ``language`` (one of :data:`LANGUAGES`), checked against English."""
    return load_catalogue(__name__, language)


@functools.cache
def load_catalogue(package: str, language: str = DEFAULT_LANGUAGE) -> Locale:
    """The strings of ``language`` kept as ``<language>.yaml`` in ``package``, checked
    against that package's English file."""
    if language not in LANGUAGES:
        raise ValueError(
            f"unknown summary language {language!r}; known languages: {', '.join(LANGUAGES)}"
        )
    strings = _read(package, language)
    reference = strings if language == DEFAULT_LANGUAGE else _read(package, DEFAULT_LANGUAGE)
    missing, extra = set(reference) - set(strings), set(strings) - set(reference)
    if missing or extra:
        raise ValueError(
            f"locale {language!r} must have the keys of {DEFAULT_LANGUAGE!r}: "
            f"missing {sorted(missing)}, unexpected {sorted(extra)}"
        )
    for key, template in strings.items():
        if _fields(template) != _fields(reference[key]):
            raise ValueError(
                f"locale {language!r} string {key!r} must use the fields "
                f"{sorted(_fields(reference[key]))}"
            )
    return Locale(language, strings)
