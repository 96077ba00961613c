"""Deterministic sample mailboxes with ground truth: receipts and invoices in English and Hebrew
(amounts in ₪/$/€/£, some with PDF or PNG attachments) mixed with newsletters, personal mail and
notifications, spread over the months before ``end_date``.

    python -m receiptsync_sandbox.gmail.samples --out MDIR --address demo@example.com --count 150

writes MDIR/demo@example.com/sample-00001.eml … (oldest first) and ground-truth.json beside them.
The same arguments always give the same bytes. :func:`build_eml` is also handy for tests that need
one specific message.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sys
from dataclasses import asdict, dataclass
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from . import sample_content as content
from .message import message_id_for
from .sample_files import pdf_document, png_image

SAMPLE_PREFIX = "sample-"
TRUTH_FILE = "ground-truth.json"


@dataclass(frozen=True)
class SampleAttachment:
    filename: str
    mime_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class SampleMessage:
    """Ground truth for one generated message (``message_id`` is the id the emulator gives it)."""

    file_name: str
    message_id: str
    address: str
    is_receipt: bool
    kind: str  # receipt | newsletter | personal | notification
    language: str  # en | he
    subject: str
    sender: str  # the From header as displayed: Name <address>
    sender_address: str
    date: dt.datetime  # aware, UTC
    amount: Decimal | None
    currency: str | None  # ISO code
    amount_in: tuple[str, ...]  # where the amount is written: subject, body, pdf
    attachments: tuple[SampleAttachment, ...]

    def as_json(self) -> dict:
        data = asdict(self)
        data["date"] = self.date.isoformat()
        data["amount"] = None if self.amount is None else str(self.amount)
        return data


@dataclass
class _Draft:
    """A message being composed: what build_eml needs plus the truth to report."""

    kind: str
    language: str
    subject: str
    sender_name: str
    sender_address: str
    zone: str
    text: str | None = None
    html: str | None = None
    attachments: tuple[tuple[str, str, bytes], ...] = ()
    amount: Decimal | None = None
    currency: str | None = None
    amount_in: tuple[str, ...] = ()


# ---------------------------------------------------------------- one RFC 822 message


def build_eml(*, subject: str, sender: str, to: str, date: dt.datetime, text: str | None = None,
              html: str | None = None, attachments: tuple[tuple[str, str, bytes], ...] = (),
              message_id: str | None = None, extra_headers: dict[str, str] | None = None,
              transfer_encoding: str | None = None) -> bytes:
    """RFC 822 bytes (CRLF) for one message; ``attachments`` are (file name, mime type, bytes).

    Multipart boundaries are derived from the content, so equal inputs give equal bytes.
    """
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id or f"<{hashlib.sha1(f'{subject}{date}'.encode()).hexdigest()[:20]}@sample>"
    for name, value in (extra_headers or {}).items():
        message[name] = value
    _set_body(message, text, html, transfer_encoding)
    for filename, mime_type, data in attachments:
        maintype, _, subtype = mime_type.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    _fix_boundaries(message)
    return message.as_bytes()


def _set_body(message: EmailMessage, text: str | None, html: str | None, transfer_encoding: str | None) -> None:
    if text is None and html is None:
        text = ""
    if text is not None:
        message.set_content(text, subtype="plain", charset="utf-8", cte=_cte(text, transfer_encoding))
        if html is not None:
            message.add_alternative(html, subtype="html", charset="utf-8", cte=_cte(html, transfer_encoding))
    else:
        message.set_content(html, subtype="html", charset="utf-8", cte=_cte(html, transfer_encoding))


def _cte(body: str, requested: str | None) -> str:
    if requested:
        return requested
    return "7bit" if body.isascii() else "base64"


def _fix_boundaries(message: EmailMessage) -> None:
    """Replace the random boundaries the generator would pick with ones derived from the content."""
    for number, part in enumerate(message.walk()):
        if part.is_multipart():
            digest = hashlib.sha1(f"{message['Message-ID']}/{number}".encode()).hexdigest()[:24]
            part.set_boundary(f"=_sample_{digest}")


# ---------------------------------------------------------------- composing sample mail


def _compose_receipt(rng: random.Random) -> _Draft:
    vendor = rng.choice(content.VENDORS)
    currency = rng.choice(vendor.currencies)
    amount = None if rng.random() < 0.05 else content.random_amount(rng, currency)
    number = str(rng.randrange(1000, 99999))
    hebrew = rng.random() < (0.85 if vendor.hebrew else 0.1)
    with_pdf = amount is not None and rng.random() < 0.4
    with_png = not with_pdf and rng.random() < 0.15
    amount_text = content.format_amount(rng, amount, currency) if amount is not None else ""
    places = _amount_places(rng, amount, with_pdf)
    draft = _Draft("receipt", "he" if hebrew else "en", "", vendor.name, vendor.address, vendor.zone,
                   amount=amount, currency=currency if amount is not None else None, amount_in=places)
    draft.subject = _receipt_subject(rng, hebrew, "subject" in places, vendor.name, number, amount_text)
    lines = _receipt_lines(rng, hebrew, vendor.name, number, amount_text if "body" in places else "", with_pdf)
    _set_receipt_body(rng, draft, lines)
    attachments = []
    if with_pdf:
        attachments.append(_receipt_pdf(rng, hebrew, vendor, number, amount, currency))
    if with_png:
        name = rng.choice(("receipt.png", f"scan-{number}.png", "קבלה.png" if hebrew else "photo-receipt.png"))
        attachments.append((name, "image/png", png_image(rng)))
    draft.attachments = tuple(attachments)
    return draft


def _amount_places(rng: random.Random, amount: Decimal | None, with_pdf: bool) -> tuple[str, ...]:
    """Where the total is written: a PDF always has it; subject sometimes; body usually."""
    if amount is None:
        return ()
    places = {"pdf"} if with_pdf else set()
    if rng.random() < 0.15:
        places.add("subject")
    if rng.random() < (0.4 if with_pdf else 0.85) or not places:
        places.add("body")
    return tuple(sorted(places))


def _receipt_subject(rng: random.Random, hebrew: bool, amount_in_subject: bool, vendor: str, number: str,
                     amount_text: str) -> str:
    if hebrew:
        templates = content.HEBREW_SUBJECTS_WITH_AMOUNT if amount_in_subject else content.HEBREW_SUBJECTS
    else:
        templates = content.ENGLISH_SUBJECTS_WITH_AMOUNT if amount_in_subject else content.ENGLISH_SUBJECTS
    return rng.choice(templates).format(vendor=vendor, number=number, amount=amount_text)


def _receipt_lines(rng: random.Random, hebrew: bool, vendor: str, number: str, amount_text: str,
                   with_pdf: bool) -> list[str]:
    items = rng.sample(content.HEBREW_ITEMS if hebrew else content.ENGLISH_ITEMS, rng.randint(1, 3))
    if hebrew:
        lines = [f"תודה שקנית ב{vendor}!", f"מספר הזמנה: {number}", *[f"- {item}" for item in items]]
        if amount_text:
            lines.append(f"סה״כ לתשלום: {amount_text}")
        if with_pdf:
            lines.append("החשבונית המלאה מצורפת כקובץ PDF.")
        lines.append("בברכה, צוות " + vendor)
    else:
        lines = [f"Thank you for shopping at {vendor}.", f"Reference: {number}", *[f"- {item}" for item in items]]
        if amount_text:
            lines.append(f"Total: {amount_text}")
        if with_pdf:
            lines.append("The full invoice is attached as a PDF.")
        lines.append(f"The {vendor} team")
    return lines


def _set_receipt_body(rng: random.Random, draft: _Draft, lines: list[str]) -> None:
    style = rng.choice(("plain", "html", "both"))
    if style in ("plain", "both"):
        draft.text = "\n".join(lines) + "\n"
    if style in ("html", "both"):
        direction = ' dir="rtl"' if draft.language == "he" else ""
        paragraphs = "".join(f"<p>{line}</p>" for line in lines)
        draft.html = f"<html><body{direction}><h2>{draft.sender_name}</h2>{paragraphs}</body></html>\n"


def _receipt_pdf(rng: random.Random, hebrew: bool, vendor: content.Vendor, number: str, amount: Decimal,
                 currency: str) -> tuple[str, str, bytes]:
    pdf_symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(currency)  # no ₪ in the standard fonts
    total = f"{pdf_symbol}{amount:,.2f}" if pdf_symbol and rng.random() < 0.5 else f"{currency} {amount:,.2f}"
    heading = f"Tax Invoice / Receipt {number}" if vendor.hebrew else f"Invoice {number}"
    lines = [vendor.latin, heading, f"Customer reference: C-{rng.randrange(10000, 99999)}", f"Total: {total}",
             "Thank you for your business."]
    if hebrew:
        name = rng.choice((f"חשבונית-{number}.pdf", f"kabala-{number}.pdf"))
    else:
        name = rng.choice((f"invoice-{number}.pdf", f"receipt-{number}.pdf", f"{vendor.latin.split()[0]}-{number}.pdf"))
    return name, "application/pdf", pdf_document(lines, title=heading)


def _compose_other(rng: random.Random) -> _Draft:
    kind = rng.choices(("newsletter", "personal", "notification"), weights=(4, 4, 2))[0]
    if kind == "newsletter":
        return _compose_newsletter(rng)
    if kind == "personal":
        return _compose_personal(rng)
    return _compose_notification(rng)


def _compose_newsletter(rng: random.Random) -> _Draft:
    brand = rng.choice(content.NEWSLETTER_BRANDS)
    template = rng.choice(content.NEWSLETTER_SUBJECTS)
    subject = template.format(brand=brand, topic=rng.choice(content.TOPICS),
                              topic_he=rng.choice(content.TOPICS_HE), month=rng.choice(content.MONTHS))
    hebrew = any("\u0590" <= char <= "\u05ff" for char in template)
    address = "news@" + brand.lower().replace(" ", "-") + ".example"
    draft = _Draft("newsletter", "he" if hebrew else "en", subject, brand, address, "America/Los_Angeles")
    stories = rng.sample(content.TOPICS, 2)
    draft.html = (f"<html><body><h1>{brand}</h1>" + "".join(f"<h3>{story}</h3><p>Read more about {story}.</p>"
                                                          for story in stories)
                  + "<p><a href='https://example.com/unsubscribe'>Unsubscribe</a></p></body></html>\n")
    if rng.random() < 0.5:
        draft.text = f"{brand}\n" + "\n".join(f"* {story}" for story in stories) + "\n"
    if rng.random() < 0.1:
        draft.attachments = (("newsletter.pdf", "application/pdf",
                              pdf_document([brand, f"Issue {rng.randrange(1, 300)}", *stories])),)
    return draft


def _compose_personal(rng: random.Random) -> _Draft:
    name, address = rng.choice(content.PERSONAL_SENDERS)
    subject = rng.choice(content.PERSONAL_SUBJECTS)
    hebrew = any("\u0590" <= char <= "\u05ff" for char in subject + name)
    draft = _Draft("personal", "he" if hebrew else "en", subject, name, address, "Asia/Jerusalem")
    draft.text = "\n".join(rng.sample(content.PERSONAL_LINES, 2)) + f"\n\n{name}\n"
    if rng.random() < 0.2:
        draft.attachments = (("photo.png", "image/png", png_image(rng)),)
    elif rng.random() < 0.05:
        draft.attachments = (("agenda.pdf", "application/pdf", pdf_document(["Agenda", "1. Welcome", "2. Plans"])),)
    return draft


def _compose_notification(rng: random.Random) -> _Draft:
    subject = rng.choice(content.NOTIFICATION_SUBJECTS)
    hebrew = any("\u0590" <= char <= "\u05ff" for char in subject)
    draft = _Draft("notification", "he" if hebrew else "en", subject, "Accounts", "no-reply@accounts.example", "UTC")
    draft.text = f"{subject}\n\nIf this was not you, please contact support.\n"
    return draft


# ---------------------------------------------------------------- a whole mailbox


def generate_mailbox(out_dir: Path | str, address: str, count: int, receipt_ratio: float = 0.2, months: int = 18,
                     seed: int = 0, end_date: dt.date | str | None = None) -> list[SampleMessage]:
    """Write ``count`` messages to ``out_dir/address/`` and return their ground truth, oldest first.

    Earlier ``sample-*.eml`` files in that folder are removed first. ``end_date`` defaults to today
    (then messages end at the current time); pass it for byte-identical output across days.
    """
    folder = Path(out_dir) / address
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{SAMPLE_PREFIX}*.eml"):
        stale.unlink()
    rng = random.Random(f"receiptsync-samples/{seed}/{address}")
    dates = _sample_dates(rng, count, months, end_date)
    receipts = round(count * receipt_ratio)
    kinds = [True] * receipts + [False] * (count - receipts)
    rng.shuffle(kinds)
    truth = [_write_sample(folder, address, index + 1, date, is_receipt, rng)
             for index, (date, is_receipt) in enumerate(zip(dates, kinds))]
    (folder / TRUTH_FILE).write_text(json.dumps([item.as_json() for item in truth], ensure_ascii=False, indent=1))
    return truth


def _sample_dates(rng: random.Random, count: int, months: int, end_date: dt.date | str | None) -> list[dt.datetime]:
    if end_date is None:
        end = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        last_day = end.date()
    else:
        last_day = dt.date.fromisoformat(end_date) if isinstance(end_date, str) else end_date
        end = dt.datetime.combine(last_day, dt.time(23, 59, 59), tzinfo=dt.timezone.utc)
    start = dt.datetime.combine(last_day - relativedelta(months=months), dt.time.min, tzinfo=dt.timezone.utc)
    span = int((end - start).total_seconds())
    return sorted(start + dt.timedelta(seconds=rng.randrange(span + 1)) for _ in range(count))


def _write_sample(folder: Path, address: str, index: int, date: dt.datetime, is_receipt: bool,
                  rng: random.Random) -> SampleMessage:
    draft = _compose_receipt(rng) if is_receipt else _compose_other(rng)
    file_name = f"{SAMPLE_PREFIX}{index:05d}.eml"
    sender = f"{draft.sender_name} <{draft.sender_address}>"
    local_date = date.astimezone(ZoneInfo(draft.zone))
    domain = draft.sender_address.split("@", 1)[1]
    raw = build_eml(subject=draft.subject, sender=sender, to=address, date=local_date, text=draft.text,
                    html=draft.html, attachments=draft.attachments,
                    message_id=f"<{index}.{rng.getrandbits(40):x}@{domain}>",
                    transfer_encoding=rng.choice((None, "quoted-printable")))
    (folder / file_name).write_bytes(raw)
    attachments = tuple(SampleAttachment(name, mime, len(data), hashlib.sha256(data).hexdigest())
                        for name, mime, data in draft.attachments)
    return SampleMessage(
        file_name=file_name, message_id=message_id_for(file_name), address=address, is_receipt=is_receipt,
        kind=draft.kind, language=draft.language, subject=draft.subject, sender=sender,
        sender_address=draft.sender_address, date=date, amount=draft.amount, currency=draft.currency,
        amount_in=draft.amount_in, attachments=attachments,
    )


def load_truth(folder: Path | str) -> list[dict]:
    """The ground truth a previous generate_mailbox wrote into ``folder`` (the address folder)."""
    return json.loads((Path(folder) / TRUTH_FILE).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m receiptsync_sandbox.gmail.samples", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the mailbox dir (MDIR)")
    parser.add_argument("--address", default="demo@example.com")
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--receipt-ratio", type=float, default=0.2)
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--end-date", help="YYYY-MM-DD (default: today)")
    args = parser.parse_args(argv)
    truth = generate_mailbox(args.out, args.address, args.count, args.receipt_ratio, args.months, args.seed,
                             args.end_date)
    receipts = sum(item.is_receipt for item in truth)
    print(f"wrote {len(truth)} messages ({receipts} receipts) to {Path(args.out) / args.address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
