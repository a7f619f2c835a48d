"""Text domain: counting, case, search and replace, extraction and a small phrasebook translator."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from tools.catalog.world import World

DOMAIN = "text"
# Bounded runs (RFC 5321's 64-character local part): with unbounded ones, findall retries at every
# character of a long run that has no "@", which is quadratic in the text's length.
_EMAILS = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}\.[\w.-]{1,190}")

PHRASEBOOK = {
    "hello": {"spanish": "hola", "french": "bonjour", "german": "hallo", "italian": "ciao", "portuguese": "ola"},
    "thank you": {"spanish": "gracias", "french": "merci", "german": "danke", "italian": "grazie", "portuguese": "obrigado"},
    "good morning": {"spanish": "buenos dias", "french": "bonjour", "german": "guten morgen", "italian": "buongiorno", "portuguese": "bom dia"},
    "goodbye": {"spanish": "adios", "french": "au revoir", "german": "auf wiedersehen", "italian": "arrivederci", "portuguese": "adeus"},
    "where is the station": {"spanish": "donde esta la estacion", "french": "ou est la gare", "german": "wo ist der bahnhof",
                             "italian": "dov'e la stazione", "portuguese": "onde fica a estacao"},
    "how much does it cost": {"spanish": "cuanto cuesta", "french": "combien ca coute", "german": "wie viel kostet das",
                              "italian": "quanto costa", "portuguese": "quanto custa"},
    "i would like a coffee": {"spanish": "quisiera un cafe", "french": "je voudrais un cafe", "german": "ich mochte einen kaffee",
                              "italian": "vorrei un caffe", "portuguese": "eu gostaria de um cafe"},
}


def functions(world: World) -> list[Callable]:
    def count_words(text: str, unique_only: bool = False) -> dict:
        """Count the words, characters and sentences in a text.

        Args:
            text: The text to analyse.
            unique_only: Count only distinct words (case-insensitive).
        """
        words = re.findall(r"[A-Za-z0-9']+", text)
        n = len({w.lower() for w in words}) if unique_only else len(words)
        return {"words": n, "characters": len(text), "sentences": len([s for s in re.split(r"[.!?]+", text) if s.strip()])}

    def change_text_case(text: str, case: Literal["upper", "lower", "title", "snake", "camel"]) -> dict:
        """Rewrite a text in a different letter case style.

        Args:
            text: The text to transform.
            case: Target style.
        """
        words = re.findall(r"[A-Za-z0-9]+", text)
        out = {"upper": text.upper(), "lower": text.lower(), "title": text.title(), "snake": "_".join(w.lower() for w in words),
               "camel": (words[0].lower() + "".join(w.capitalize() for w in words[1:])) if words else ""}[case]
        return {"result": out}

    def find_and_replace(text: str, find: str, replace: str, case_sensitive: bool = True) -> dict:
        """Replace every occurrence of a substring in a text.

        Args:
            text: The original text.
            find: Substring to look for.
            replace: Replacement string.
            case_sensitive: Whether matching respects letter case.
        """
        if not find:
            raise ValueError("find must not be empty")
        pattern = re.compile(re.escape(find), 0 if case_sensitive else re.IGNORECASE)
        out, n = pattern.subn(replace, text)
        return {"result": out, "replacements": n}

    def extract_emails(text: str) -> dict:
        """Extract all email addresses that appear in a text.

        Args:
            text: The text to scan.
        """
        return {"emails": _EMAILS.findall(text)}

    def translate_phrase(phrase: str, target_language: Literal["spanish", "french", "german", "italian", "portuguese"]) -> dict:
        """Translate a common English travel phrase using the built-in phrasebook.

        Args:
            phrase: English phrase, e.g. "thank you".
            target_language: Language to translate into.
        """
        key = re.sub(r"[^a-z' ]", "", phrase.lower()).strip()
        if key not in PHRASEBOOK:
            raise ValueError(f"phrase {phrase!r} is not in the phrasebook; known phrases: " + ", ".join(PHRASEBOOK))
        return {"phrase": phrase, "language": target_language, "translation": PHRASEBOOK[key][target_language]}

    def make_slug(text: str, separator: str = "-", max_length: int = 60) -> dict:
        """Turn a title into a URL-friendly slug.

        Args:
            text: The title.
            separator: Character placed between words.
            max_length: Maximum length of the slug.
        """
        slug = separator.join(re.findall(r"[a-z0-9]+", text.lower()))[:max_length]
        return {"slug": slug}

    def check_palindrome(text: str, ignore_spaces_and_case: bool = True) -> dict:
        """Check whether a word or phrase reads the same backwards.

        Args:
            text: The word or phrase.
            ignore_spaces_and_case: Ignore spaces, punctuation and letter case.
        """
        s = re.sub(r"[^a-z0-9]", "", text.lower()) if ignore_spaces_and_case else text
        return {"text": text, "is_palindrome": s == s[::-1], "reversed": text[::-1]}

    return [count_words, change_text_case, find_and_replace, extract_emails, translate_phrase, make_slug, check_palindrome]
