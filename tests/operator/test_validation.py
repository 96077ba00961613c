"""What the schema can't check: calendar dates, time zones, durations, the Secret and its key."""
from __future__ import annotations

import base64

import pytest

from receiptsync_operator import validation
from receiptsync_operator.validation import InvalidSpec

SECRET = {"data": {"credentials.json": base64.b64encode(b'{"refresh_token": "x"}').decode()}}


def spec(**kw):
    base = {"businessId": "acme", "gmail": {"secretRef": {"name": "gmail-acme"}}}
    base.update(kw)
    return base


def message(s, secret=SECRET):
    with pytest.raises(InvalidSpec) as info:
        validation.validate(s, secret)
    return str(info.value)


def test_valid_spec_passes():
    validation.validate(spec(fromDate="2024-02-29", toDate="2025-01-31", timeZone="Asia/Jerusalem", timeout="90s"),
                        SECRET)


@pytest.mark.parametrize("field", ["fromDate", "toDate"])
@pytest.mark.parametrize("value", ["2025-02-30", "2025-02-29", "2025-04-31", "2025-13-01"])
def test_impossible_dates_name_the_field(field, value):
    text = message(spec(**{field: value}))
    assert f"spec.{field}" in text and value in text


@pytest.mark.parametrize("tz", ["Mars/Olympus", "Europe/Berln", "EST5EDT/x", "../etc/passwd", "Europe", "utc+2"])
def test_bad_time_zones(tz):
    assert "spec.timeZone" in message(spec(timeZone=tz))


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Asia/Jerusalem"])
def test_good_time_zones(tz):
    assert validation.check_time_zone(tz) == tz


def test_no_time_zone_is_utc():
    assert validation.check_time_zone(None) == "UTC"


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400),
                                          ("1.5h", 5400), ("2h0m5s", 7205)])
def test_durations(text, seconds):
    assert validation.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "1d", "", "h", "10", "-5s", "0.1s"])
def test_bad_durations(text):
    with pytest.raises(InvalidSpec, match="spec.timeout"):
        validation.parse_duration(text)


def test_missing_secret():
    text = message(spec(), secret=None)
    assert "spec.gmail.secretRef.name" in text and "gmail-acme" in text


def test_missing_key():
    text = message(spec(gmail={"secretRef": {"name": "gmail-acme", "key": "token.json"}}))
    assert "spec.gmail.secretRef.key" in text and "token.json" in text


def test_empty_key_value():
    assert "empty" in message(spec(), secret={"data": {"credentials.json": ""}})


def test_default_key_is_credentials_json():
    assert validation.secret_ref(spec()) == ("gmail-acme", "credentials.json")


def test_messages_never_contain_the_secret_value():
    secret = {"data": {"other": base64.b64encode(b"TOPSECRET").decode()}}
    text = message(spec(), secret=secret)
    assert "TOPSECRET" not in text and base64.b64encode(b"TOPSECRET").decode() not in text


def test_first_problem_in_reading_order():
    # A bad date is reported before a missing Secret.
    assert "spec.fromDate" in message(spec(fromDate="2025-02-30"), secret=None)


def test_secret_check_can_be_skipped_when_unreadable():
    validation.validate(spec(), None, check_secret=False)
