"""Amount and currency found in receipt text, as pure functions.

Understands ₪/ILS/NIS/ש"ח, $/USD, €/EUR and £/GBP written before or after the number, and the usual
number styles (1,234.56 / 1.234,56 / 99.90 / 12). When a text names several amounts, the one after a
"total" word wins; otherwise the largest does (subtotals and taxes are smaller than the total).
"""
from __future__ import annotations

import dataclasses
import re
from decimal import Decimal, InvalidOperation

# Spelling of each currency → ISO code. Longer spellings first so "US$" is not read as "$".
_CURRENCY_SPELLINGS = {
    "US$": "USD",
    "USD": "USD",
    "$": "USD",
    "ILS": "ILS",
    "NIS": "ILS",
    "₪": "ILS",
    'ש"ח': "ILS",
    "ש״ח": "ILS",
    "שח": "ILS",
    "שקלים": "ILS",
    "EUR": "EUR",
    "€": "EUR",
    "GBP": "GBP",
    "£": "GBP",
}
_CURRENCY = "|".join(re.escape(s) for s in sorted(_CURRENCY_SPELLINGS, key=len, reverse=True))
_NUMBER = r"\d{1,3}(?:[.,\u00a0']\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
# A currency before the number ("₪ 99.90", "USD 12") or after it ("99.90 ₪", "12 USD").
_AMOUNT = re.compile(
    rf"(?<![\w.,])(?:(?P<cur1>{_CURRENCY})\s?(?P<num1>{_NUMBER})|(?P<num2>{_NUMBER})\s?(?P<cur2>{_CURRENCY}))(?!\w)",
    re.IGNORECASE,
)
_TOTAL_WORDS = re.compile(
    r"(?<![a-z])total|amount\s+(?:paid|due|charged)|grand\s+total|you\s+paid|charged|סה\"?״?כ|סך\s*הכל|סכום|לתשלום|שולם",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str  # ISO 4217


def parse_number(text: str) -> Decimal | None:
    """``1,234.56`` / ``1.234,56`` / ``1 234,56`` / ``99.9`` / ``12`` → Decimal (None if not a number).

    The last separator followed by one or two digits is the decimal point; every other separator
    groups thousands (a lone separator before exactly three digits is a thousands separator)."""
    compact = text.strip().replace("\u00a0", " ")
    match = re.fullmatch(r"(.*?)(?:[.,](\d{1,2}))?", compact)
    if not match:
        return None
    whole, fraction = match.group(1), match.group(2)
    digits = re.sub(r"[.,' ]", "", whole)
    if not digits.isdigit():
        return None
    try:
        return Decimal(f"{int(digits)}.{fraction}") if fraction else Decimal(int(digits))
    except InvalidOperation:
        return None


def find_amounts(text: str) -> list[Money]:
    """Every amount written in ``text``, in order."""
    return [money for _, money in _amounts_with_positions(text)]


def best_amount(text: str) -> Money | None:
    """The amount a receipt text charges: the first one following a "total" word on the same line,
    else the largest (None if the text names no amount)."""
    found = _amounts_with_positions(text)
    if not found:
        return None
    for keyword in _TOTAL_WORDS.finditer(text):
        line_end = text.find("\n", keyword.end())
        line_end = len(text) if line_end < 0 else line_end
        after = [money for start, money in found if keyword.end() <= start < line_end]
        if after:
            return after[0]
    return max((money for _, money in found), key=lambda m: m.amount)


def _amounts_with_positions(text: str) -> list[tuple[int, Money]]:
    found: list[tuple[int, Money]] = []
    for match in _AMOUNT.finditer(text):
        spelling = match.group("cur1") or match.group("cur2")
        number = parse_number(match.group("num1") or match.group("num2"))
        currency = _currency_code(spelling)
        if number is not None and currency:
            found.append((match.start(), Money(number, currency)))
    return found


def _currency_code(spelling: str) -> str | None:
    for key, code in _CURRENCY_SPELLINGS.items():
        if key.lower() == spelling.lower():
            return code
    return None
