"""The Gmail search parser/matcher as a pure function: a table of queries against fixed messages."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiptsync_sandbox.gmail.query import QueryError, SearchDoc, compile_query, matches

UTC = dt.timezone.utc
LA = ZoneInfo("America/Los_Angeles")
JERUSALEM = ZoneInfo("Asia/Jerusalem")


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def doc(subject="", sender="", to="alice@example.com", body="", filenames=(), when=None, labels=("INBOX",),
        size=1000, cc=""):
    when = when or dt.datetime(2024, 6, 1, 12, tzinfo=UTC)
    return SearchDoc.build(internal_ms=ms(when), subject=subject, sender=sender, to=to, cc=cc, body=body,
                           filenames=filenames, labels=labels, size=size)


ACME = doc(subject="Your receipt from Acme", sender="Acme Store <billing@acme.example>",
           body="Thanks! Order confirmation for order 1234. Total: $42.17", filenames=("invoice-1234.pdf",))
HEBREW = doc(subject="קבלה על תשלום", sender="קפה נחת <office@cafe.example>",
             body="חשבונית מס 5521\nסה״כ לתשלום: 120.50 ₪", filenames=("חשבונית-5521.pdf",))
NEWSLETTER = doc(subject="Weekly digest: gardening", sender="Garden Club <news@garden.example>",
                 body="Read about confirmation of order in nature", cc="friends@example.com")
PHOTO = doc(subject="Photos from the weekend", sender="Dana <dana@friends.example>", body="See you",
            filenames=("photo.png",), size=50_000)
ALL = {"acme": ACME, "hebrew": HEBREW, "newsletter": NEWSLETTER, "photo": PHOTO}


def names_matching(query: str) -> set[str]:
    return {name for name, message in ALL.items() if matches(query, message, me="alice@example.com")}


@pytest.mark.parametrize("query, expected", [
    # words: whole words, case-insensitive, anywhere (subject, from, body, file names)
    ("receipt", {"acme"}),
    ("RECEIPT", {"acme"}),
    ("rec", set()),
    ("acme", {"acme"}),
    ("1234", {"acme"}),
    ("42.17", {"acme"}),
    ("$42.17", {"acme"}),
    ("invoice", {"acme"}),  # only in the attachment's file name
    ("weekend", {"photo"}),
    ("", {"acme", "hebrew", "newsletter", "photo"}),
    # phrases are consecutive words
    ('"order confirmation"', {"acme"}),
    ('"confirmation of order"', {"newsletter"}),
    ('"receipt Acme"', set()),
    # Hebrew, from encoded headers and bodies
    ("קבלה", {"hebrew"}),
    ('"חשבונית מס"', {"hebrew"}),
    ("חשבונית", {"hebrew"}),
    ('"אישור תשלום"', set()),
    ("נחת", {"hebrew"}),
    ("120.50", {"hebrew"}),
    # OR, braces, precedence (OR binds tighter than the implicit AND)
    ("receipt OR קבלה", {"acme", "hebrew"}),
    ("{receipt קבלה photos}", {"acme", "hebrew", "photo"}),
    ("receipt or קבלה", set()),  # lower-case "or" is a word
    ("acme receipt OR digest", {"acme"}),
    ("(acme OR garden) (receipt OR digest)", {"acme", "newsletter"}),
    ('receipt OR invoice OR "order confirmation" OR "payment confirmation" OR קבלה OR חשבונית OR "חשבונית מס"',
     {"acme", "hebrew"}),
    # negation
    ("-receipt", {"hebrew", "newsletter", "photo"}),
    ("-(receipt OR קבלה)", {"newsletter", "photo"}),
    ("has:attachment -filename:png", {"acme", "hebrew"}),
    ("-from:acme -from:cafe", {"newsletter", "photo"}),
    # fields
    ("from:acme", {"acme"}),
    ("from:billing@acme.example", {"acme"}),
    ('from:"Acme Store"', {"acme"}),
    ("from:receipt", set()),
    ("subject:receipt", {"acme"}),
    ("subject:invoice", set()),
    ("subject:(receipt acme)", {"acme"}),
    ("subject:(receipt OR קבלה)", {"acme", "hebrew"}),
    ('subject:"על תשלום"', {"hebrew"}),
    ("to:alice@example.com", {"acme", "hebrew", "newsletter", "photo"}),
    ("to:friends@example.com", {"newsletter"}),  # to: also searches cc
    ("to:bob", set()),
    ("from:me", set()),
    ("to:me", {"acme", "hebrew", "newsletter", "photo"}),
    # attachments
    ("has:attachment", {"acme", "hebrew", "photo"}),
    ("-has:attachment", {"newsletter"}),
    ("filename:pdf", {"acme", "hebrew"}),
    ("filename:invoice-1234.pdf", {"acme"}),
    ("filename:INVOICE-1234.PDF", {"acme"}),
    ("filename:png", {"photo"}),
    ("filename:חשבונית", {"hebrew"}),
    ("filename:doc", set()),
    ("has:drive", set()),
    # labels
    ("in:inbox", {"acme", "hebrew", "newsletter", "photo"}),
    ("label:INBOX", {"acme", "hebrew", "newsletter", "photo"}),
    ("in:spam", set()),
    ("in:anywhere receipt", {"acme"}),
    ("is:unread", set()),
    ("is:read", {"acme", "hebrew", "newsletter", "photo"}),
    # size
    ("larger:10K", {"photo"}),
    ("smaller:10K", {"acme", "hebrew", "newsletter"}),
    # unknown operators and odd input are words, never errors
    ("foo:bar", set()),
    ("receipt:from", {"acme"}),  # not an operator: the words receipt, from, side by side
    ("acme:receipt", set()),
    ("subject:", set()),  # the word "subject"
    ("after:someday", set()),  # an unreadable date is searched as words
    ('"unclosed phrase', set()),
    ("((receipt", {"acme"}),
    ("receipt))", {"acme"}),
    ("OR receipt OR", {"acme"}),
    ("AND receipt", {"acme"}),
    ("-", {"acme", "hebrew", "newsletter", "photo"}),  # a lone dash has no word in it: narrows nothing
    ("₪", {"acme", "hebrew", "newsletter", "photo"}),  # punctuation only: narrows nothing
    ("-₪", {"acme", "hebrew", "newsletter", "photo"}),
    ("receipt OR ₪", {"acme"}),
    ("{}", {"acme", "hebrew", "newsletter", "photo"}),
    ("+receipt", {"acme"}),
])
def test_query_table(query, expected):
    assert names_matching(query) == expected


# ---------------------------------------------------------------- dates: midnight Los Angeles vs epoch


def at(*args, zone=UTC) -> SearchDoc:
    return doc(subject="x", when=dt.datetime(*args, tzinfo=zone))


@pytest.mark.parametrize("query, moment, expected", [
    # a plain winter day: midnight PST is 08:00 UTC
    ("after:2024/01/15", dt.datetime(2024, 1, 15, 7, 59, 59, tzinfo=UTC), False),
    ("after:2024/01/15", dt.datetime(2024, 1, 15, 8, 0, 0, tzinfo=UTC), True),
    ("after:2024-01-15", dt.datetime(2024, 1, 15, 8, 0, 0, tzinfo=UTC), True),
    ("after:01/15/2024", dt.datetime(2024, 1, 15, 8, 0, 0, tzinfo=UTC), True),
    ("before:2024/01/15", dt.datetime(2024, 1, 15, 7, 59, 59, tzinfo=UTC), True),
    ("before:2024/01/15", dt.datetime(2024, 1, 15, 8, 0, 0, tzinfo=UTC), False),
    ("newer:2024/01/15", dt.datetime(2024, 1, 15, 8, 0, 0, tzinfo=UTC), True),
    ("older:2024/01/15", dt.datetime(2024, 1, 15, 8, 0, 0, tzinfo=UTC), False),
    # 07:00 in Jerusalem on the 15th is still the 14th in Los Angeles: a date misses it, epoch does not
    ("after:2024/01/15", dt.datetime(2024, 1, 15, 7, 0, tzinfo=JERUSALEM), False),
    (f"after:{int(dt.datetime(2024, 1, 15, tzinfo=JERUSALEM).timestamp())}",
     dt.datetime(2024, 1, 15, 7, 0, tzinfo=JERUSALEM), True),
    # epoch seconds are exact: after is inclusive, before exclusive
    ("after:1705305600", dt.datetime.fromtimestamp(1705305600, UTC), True),
    ("after:1705305600", dt.datetime.fromtimestamp(1705305599, UTC), False),
    ("before:1705305600", dt.datetime.fromtimestamp(1705305600, UTC), False),
    ("before:1705305600", dt.datetime.fromtimestamp(1705305599, UTC), True),
    # DST starts 2024-03-10 (midnight still PST, 08:00 UTC); the next midnight is PDT (07:00 UTC)
    ("after:2024/03/10", dt.datetime(2024, 3, 10, 7, 59, 59, tzinfo=UTC), False),
    ("after:2024/03/10", dt.datetime(2024, 3, 10, 8, 0, tzinfo=UTC), True),
    ("before:2024/03/11", dt.datetime(2024, 3, 11, 6, 59, 59, tzinfo=UTC), True),
    ("before:2024/03/11", dt.datetime(2024, 3, 11, 7, 0, tzinfo=UTC), False),
    # DST ends 2024-11-03 (midnight PDT, 07:00 UTC); 2024-11-04 midnight is PST (08:00 UTC)
    ("after:2024/11/03", dt.datetime(2024, 11, 3, 6, 59, 59, tzinfo=UTC), False),
    ("after:2024/11/03", dt.datetime(2024, 11, 3, 7, 0, tzinfo=UTC), True),
    ("before:2024/11/04", dt.datetime(2024, 11, 4, 7, 59, 59, tzinfo=UTC), True),
    ("before:2024/11/04", dt.datetime(2024, 11, 4, 8, 0, tzinfo=UTC), False),
    # leap day, and a range written both ways
    ("after:2024/02/29 before:2024/03/01", dt.datetime(2024, 2, 29, 12, tzinfo=LA), True),
    ("after:2024/02/29 before:2024/03/01", dt.datetime(2024, 3, 1, 0, 0, tzinfo=LA), False),
    ("after:2023/02/29", dt.datetime(2024, 1, 1, tzinfo=UTC), False),  # no such day: words, no match
])
def test_date_bounds(query, moment, expected):
    assert matches(query, doc(subject="x", when=moment)) is expected


def test_relative_age_uses_the_given_clock():
    now = dt.datetime(2025, 6, 30, 12, tzinfo=UTC)
    recent = doc(when=now - dt.timedelta(days=1))
    old = doc(when=now - dt.timedelta(days=40))
    assert matches("newer_than:2d", recent, now_ms=ms(now))
    assert not matches("newer_than:2d", old, now_ms=ms(now))
    assert matches("older_than:1m", old, now_ms=ms(now))
    assert not matches("older_than:1y", old, now_ms=ms(now))


def test_epoch_bounds_for_a_day_in_another_zone_select_exactly_that_day():
    """What the worker sends (CONTRACT §4): epoch bounds of whole days in the resource's zone."""
    start = int(dt.datetime(2024, 3, 31, tzinfo=JERUSALEM).timestamp())
    end = int(dt.datetime(2024, 4, 1, tzinfo=JERUSALEM).timestamp())
    node = compile_query(f"after:{start} before:{end}")
    inside = [dt.datetime(2024, 3, 31, 0, 0, tzinfo=JERUSALEM), dt.datetime(2024, 3, 31, 23, 59, 59, tzinfo=JERUSALEM)]
    outside = [dt.datetime(2024, 3, 30, 23, 59, 59, tzinfo=JERUSALEM), dt.datetime(2024, 4, 1, 0, 0, tzinfo=JERUSALEM)]
    assert all(node.matches(doc(when=moment)) for moment in inside)
    assert not any(node.matches(doc(when=moment)) for moment in outside)


# ---------------------------------------------------------------- robustness


def test_absurd_nesting_is_a_query_error_not_a_crash():
    with pytest.raises(QueryError):
        compile_query("(" * 500 + "receipt" + ")" * 500)
    with pytest.raises(QueryError):
        compile_query("-" * 500 + "receipt")


QUERY_PIECES = list('ab "(){}-:') + ["OR", "AND", "קבלה", "2024/01/15", "1705305600", "$4.2", "₪", "from:", "after:",
                                     "before:", "filename:", "subject:(", "has:attachment", "in:", "larger:"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(QUERY_PIECES), max_size=25).map("".join))
def test_any_query_parses_and_matches_without_raising(query):
    node = compile_query(query)
    for message in ALL.values():
        assert node.matches(message) in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_unicode_never_raises(query):
    try:
        node = compile_query(query)
    except QueryError:
        return
    node.matches(ACME)
