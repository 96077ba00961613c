"""Word tokens as search sees them, shared by the indexed messages and the query terms.

Both sides go through the same function so that a term matches exactly the words it would match in
the text: case-folded, accents and Hebrew points dropped, split on anything that is not a letter or
digit (so "$42.17" is the words 42, 17 and "Invoice#1234" is invoice, 1234).
"""
from __future__ import annotations

import html
import re
import unicodedata

_WORD = re.compile(r"[^\W_]+")
_TAG = re.compile(r"<[^>]*>")
_SKIPPED_HTML = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Case-fold and drop combining marks (accents, niqqud), as Gmail search is insensitive to them."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def tokenize(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(normalize(text)))


def html_to_text(markup: str) -> str:
    without_code = _SKIPPED_HTML.sub(" ", markup)
    return collapse_spaces(html.unescape(_TAG.sub(" ", without_code)))


def collapse_spaces(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def contains_phrase(haystack: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    """True when ``phrase`` occurs as consecutive words of ``haystack``."""
    if not phrase:
        return True
    width = len(phrase)
    first = phrase[0]
    for start, word in enumerate(haystack):
        if word == first and haystack[start:start + width] == phrase:
            return True
    return False
