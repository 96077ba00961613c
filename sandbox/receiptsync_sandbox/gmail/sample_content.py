"""The words of sample mail: vendors, subjects, bodies, amounts — English and Hebrew.

Non-receipt mail deliberately avoids every receipt term (RECEIPT_TERMS) and words like order,
payment, billing, so "is this a receipt" has one honest answer in the ground truth.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

# The words a receipt query searches for; every sample receipt has one, no other sample mail has any.
RECEIPT_TERMS = ("receipt", "invoice", "order confirmation", "payment confirmation",
                 "קבלה", "חשבונית", "חשבונית מס", "אישור תשלום")

CURRENCY_SYMBOLS = {"ILS": "₪", "USD": "$", "EUR": "€", "GBP": "£"}


@dataclass(frozen=True)
class Vendor:
    name: str  # as shown in From and bodies
    latin: str  # for PDFs (standard fonts have no Hebrew)
    address: str
    hebrew: bool
    currencies: tuple[str, ...]
    zone: str


VENDORS = (
    Vendor("Acme Cloud", "Acme Cloud", "billing@acme-cloud.example", False, ("USD", "EUR"), "America/New_York"),
    Vendor("Globex Books", "Globex Books", "orders@globex.example", False, ("USD", "GBP"), "Europe/London"),
    Vendor("Initech Software", "Initech Software", "invoices@initech.example", False, ("USD",), "America/Chicago"),
    Vendor("Umbrella Coffee", "Umbrella Coffee", "hello@umbrella-coffee.example", False, ("EUR", "GBP"),
           "Europe/Berlin"),
    Vendor("Contoso Hosting", "Contoso Hosting", "accounts@contoso.example", False, ("USD", "EUR", "ILS"), "UTC"),
    Vendor("Northwind Travel", "Northwind Travel", "bookings@northwind.example", False, ("EUR", "USD"), "Europe/Paris"),
    Vendor("Wonka Sweets", "Wonka Sweets", "shop@wonka.example", False, ("GBP",), "Europe/London"),
    Vendor("קפה נחת", "Cafe Nachat", "office@cafe-nachat.example", True, ("ILS",), "Asia/Jerusalem"),
    Vendor("חשמל ישיר", "Hashmal Yashir", "service@hashmal.example", True, ("ILS",), "Asia/Jerusalem"),
    Vendor("סופר השכונה", "Super Hashchuna", "shop@super-shchuna.example", True, ("ILS",), "Asia/Jerusalem"),
    Vendor("מחשבים פלוס", "Mahshevim Plus", "sales@mahshevim.example", True, ("ILS", "USD"), "Asia/Jerusalem"),
    Vendor("פארם טוב", "Pharm Tov", "info@pharm-tov.example", True, ("ILS",), "Asia/Jerusalem"),
)

ENGLISH_SUBJECTS = (
    "Your receipt from {vendor}",
    "Invoice #{number}",
    "Order confirmation #{number}",
    "Payment confirmation",
    "Receipt for your payment to {vendor}",
    "Your {vendor} invoice is ready",
)
ENGLISH_SUBJECTS_WITH_AMOUNT = (
    "Payment confirmation - {amount}",
    "Your receipt from {vendor} ({amount})",
    "Invoice #{number}: {amount} due",
)
HEBREW_SUBJECTS = (
    "קבלה על תשלום",
    "חשבונית מס {number}",
    "אישור תשלום",
    "חשבונית מס/קבלה {number}",
    "קבלה מספר {number} - {vendor}",
)
HEBREW_SUBJECTS_WITH_AMOUNT = (
    "אישור תשלום - {amount}",
    "קבלה על תשלום {amount}",
)

ENGLISH_ITEMS = ("Monthly plan", "Paperback book", "Flat white", "Extra storage", "Hotel night", "Gift box",
                 "USB-C cable", "Support add-on")
HEBREW_ITEMS = ("קפה הפוך", "מנוי חודשי", "מטען לטלפון", "ויטמין C", "לחם מחמצת", "חבילת גלישה")

NEWSLETTER_SUBJECTS = (
    "Weekly digest: {topic}", "{brand} newsletter - {month}", "What's new at {brand}", "5 tips about {topic}",
    "עדכון שבועי: {topic_he}", "הניוזלטר של {brand} - {month}",
)
NEWSLETTER_BRANDS = ("Tech Times", "Garden Club", "City Runners", "Photo Weekly", "Cooking Corner")
TOPICS = ("remote work", "spring gardening", "marathon training", "night photography", "sourdough")
TOPICS_HE = ("גינון בחורף", "ריצה למתחילים", "בישול ביתי", "צילום לילה")
PERSONAL_SUBJECTS = (
    "Dinner on Friday?", "Photos from the weekend", "Meeting notes", "Happy birthday!", "Re: weekend plans",
    "שבת שלום", "מה שלומך?", "יום הולדת שמח", "תמונות מהטיול", "Quick question",
)
PERSONAL_SENDERS = (("Dana Levi", "dana.levi@friends.example"), ("Tom Baker", "tom@friends.example"),
                    ("יוסי כהן", "yossi@family.example"), ("Maya Green", "maya@work.example"),
                    ("נועה שמש", "noa@family.example"))
NOTIFICATION_SUBJECTS = ("Your password was changed", "New sign-in to your account", "Reminder: dentist appointment",
                         "Your storage is almost full", "תזכורת: תור לרופא", "כניסה חדשה לחשבון שלך")
PERSONAL_LINES = ("See you soon!", "Let me know what you think.", "Here are the photos I promised.",
                  "Are you free next week?", "מתי נוח לך להיפגש?", "נשמח לראות אותך!", "Talk later.")

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def random_amount(rng: random.Random, currency: str) -> Decimal:
    high = 2500 if currency == "ILS" else 600
    cents = rng.randrange(300, high * 100)
    return Decimal(cents).scaleb(-2)


def format_amount(rng: random.Random, amount: Decimal, currency: str) -> str:
    """One of the ways mail writes an amount: $42.17, 42.17 USD, ILS 1,234.50, 1,234.50 ₪ ..."""
    number = f"{amount:,.2f}" if amount >= 1000 and rng.random() < 0.7 else f"{amount:.2f}"
    symbol = CURRENCY_SYMBOLS[currency]
    style = rng.randrange(4)
    if style == 0:
        return f"{symbol}{number}" if currency != "ILS" else f"₪{number}"
    if style == 1:
        return f"{number} {symbol}"
    if style == 2:
        return f"{currency} {number}"
    return f"{number} {currency}"
