"""Amount and currency parsing: the formats receipts use, in English and Hebrew."""
from __future__ import annotations

from decimal import Decimal

import pytest

from receiptsync_worker.money import best_amount, parse_number

AMOUNTS = [
    ("Total: ₪ 99.90", "99.90", "ILS"),
    ("99.90 ₪", "99.90", "ILS"),
    ("₪99.90", "99.90", "ILS"),
    ("סה\"כ לתשלום: 1,234.56 ש\"ח", "1234.56", "ILS"),
    ("סך הכל 45 ש״ח", "45", "ILS"),
    ("ILS 1,234.56", "1234.56", "ILS"),
    ("Paid 12 NIS", "12", "ILS"),
    ("$12", "12", "USD"),
    ("$1,234.56", "1234.56", "USD"),
    ("USD 12", "12", "USD"),
    ("12.50 USD", "12.50", "USD"),
    ("US$ 7.00", "7.00", "USD"),
    ("€1.234,56", "1234.56", "EUR"),
    ("1.234,56 €", "1234.56", "EUR"),
    ("EUR 99", "99", "EUR"),
    ("Amount: 19,90 EUR", "19.90", "EUR"),
    ("£12.50", "12.50", "GBP"),
    ("GBP 1,000", "1000", "GBP"),
    ("Subtotal $10.00\nTax $1.70\nTotal $11.70", "11.70", "USD"),
    ("Subtotal $10.00 VAT $1.70 Grand Total: $11.70", "11.70", "USD"),
    ("Items: $3.00, $4.00, $25.00", "25.00", "USD"),  # no total line: the largest
    ("Your receipt #1234 from Shop — total ₪ 250.00", "250.00", "ILS"),
    # item lines before the total: the total line wins, even over a larger item
    ("- קפה הפוך ₪14.00\n- לחם מחמצת ₪32.00\nסה״כ לתשלום: ₪46.00", "46.00", "ILS"),
    ("- Hotel night $420.00\n- Coupon 20.00 USD\nTotal: $400.00", "400.00", "USD"),
]


@pytest.mark.parametrize("text, amount, currency", AMOUNTS)
def test_amounts(text, amount, currency):
    money = best_amount(text)
    assert money is not None, text
    assert (money.amount, money.currency) == (Decimal(amount), currency)


@pytest.mark.parametrize("text", ["Order 12345 shipped", "nothing 12 nissan", "Meeting at 10.30", "", "ILS",
                                  "version 1.2.3"])
def test_no_amount(text):
    assert best_amount(text) is None


@pytest.mark.parametrize("raw, value", [
    ("1,234.56", "1234.56"), ("1.234,56", "1234.56"), ("99.9", "99.9"), ("12", "12"),
    ("1,234", "1234"), ("1.234", "1234"), ("99,90", "99.90"), ("1,234,567.89", "1234567.89"),
])
def test_parse_number(raw, value):
    assert parse_number(raw) == Decimal(value)
