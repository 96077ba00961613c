"""The emulator through the real google-api-python-client: list, get (all formats, fields),
attachments, batch, and Google's error shapes. Mailbox: generated samples with ground truth."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import urllib.error
import urllib.request

import pytest
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from gmail_helpers import ALICE, BOB

RECEIPT_QUERY = ('receipt OR invoice OR "order confirmation" OR "payment confirmation" OR קבלה OR חשבונית '
                 'OR "חשבונית מס" OR "אישור תשלום"')


def truth_ms(item: dict) -> int:
    return int(dt.datetime.fromisoformat(item["date"]).timestamp() * 1000)


def error_of(excinfo) -> dict:
    return json.loads(excinfo.value.content)["error"]


def decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data)


def list_all(gmail, **params) -> list[dict]:
    found = []
    request = gmail.users().messages().list(userId="me", **params)
    while request is not None:
        page = request.execute()
        found += page.get("messages", [])
        request = gmail.users().messages().list_next(request, page)
    return found


def test_profile_names_the_token_mailbox(gmail, sample_truth):
    profile = gmail.users().getProfile(userId="me").execute()
    assert profile["emailAddress"] == ALICE
    assert profile["messagesTotal"] == len(sample_truth)
    assert int(profile["historyId"]) > 0


def test_list_returns_everything_newest_first(gmail, sample_truth):
    page = gmail.users().messages().list(userId="me").execute()
    newest_first = sorted(sample_truth, key=truth_ms, reverse=True)
    assert [item["id"] for item in page["messages"]] == [item["message_id"] for item in newest_first]
    assert page["resultSizeEstimate"] == len(sample_truth)
    assert "nextPageToken" not in page
    assert all(item["threadId"] == item["id"] for item in page["messages"])


def test_pages_cover_the_list_once(gmail, sample_truth):
    paged = list_all(gmail, maxResults=7)
    assert len(paged) == len(sample_truth)
    assert len({item["id"] for item in paged}) == len(sample_truth)
    assert paged == gmail.users().messages().list(userId="me", maxResults=500).execute()["messages"]


def test_receipt_query_finds_exactly_the_receipts(gmail, sample_truth):
    found = {item["id"] for item in list_all(gmail, q=RECEIPT_QUERY, maxResults=10)}
    assert found == {item["message_id"] for item in sample_truth if item["is_receipt"]}


def test_hebrew_query_finds_hebrew_receipts(gmail, sample_truth):
    found = {item["id"] for item in list_all(gmail, q='קבלה OR "חשבונית מס" OR "אישור תשלום"')}
    hebrew_receipts = {item["message_id"] for item in sample_truth if item["is_receipt"] and item["language"] == "he"}
    assert hebrew_receipts and found == hebrew_receipts


def test_epoch_range_query_matches_ground_truth_dates(gmail, sample_truth):
    middle = sorted(truth_ms(item) for item in sample_truth)[len(sample_truth) // 2] // 1000
    after, before = middle - 20 * 86400, middle + 1
    found = {item["id"] for item in list_all(gmail, q=f"after:{after} before:{before}")}
    expected = {item["message_id"] for item in sample_truth if after * 1000 <= truth_ms(item) < before * 1000}
    assert expected and found == expected


def test_no_match_has_no_messages_key(gmail):
    page = gmail.users().messages().list(userId="me", q="zzzznothing").execute()
    assert page == {"resultSizeEstimate": 0}


def test_get_full_has_headers_dates_and_attachments(gmail, sample_truth):
    item = next(item for item in sample_truth if any(a["mime_type"] == "application/pdf" for a in item["attachments"]))
    message = gmail.users().messages().get(userId="me", id=item["message_id"]).execute()
    assert message["id"] == item["message_id"]
    assert message["internalDate"] == str(truth_ms(item))
    assert message["labelIds"] == ["INBOX"]
    headers = {header["name"]: header["value"] for header in message["payload"]["headers"]}
    assert headers["Subject"] == item["subject"]
    assert headers["From"] == item["sender"]
    assert message["payload"]["mimeType"] == "multipart/mixed"
    attachment_parts = [part for part in message["payload"]["parts"] if part["filename"]]
    assert [part["filename"] for part in attachment_parts] == [a["filename"] for a in item["attachments"]]
    for part, expected in zip(attachment_parts, item["attachments"]):
        assert "data" not in part["body"] and part["body"]["size"] == expected["size"]
        body = gmail.users().messages().attachments().get(
            userId="me", messageId=item["message_id"], id=part["body"]["attachmentId"]).execute()
        assert hashlib.sha256(decode(body["data"])).hexdigest() == expected["sha256"]
        assert body["size"] == expected["size"]


def test_body_parts_carry_decoded_text(gmail, sample_truth):
    item = next(item for item in sample_truth if "body" in item["amount_in"] and item["language"] == "he")
    message = gmail.users().messages().get(userId="me", id=item["message_id"]).execute()
    texts = []
    stack = [message["payload"]]
    while stack:
        part = stack.pop()
        stack += part.get("parts", [])
        if part["mimeType"].startswith("text/") and "data" in part["body"]:
            texts.append(decode(part["body"]["data"]).decode("utf-8"))
    whole = "\n".join(texts)
    assert "סה״כ לתשלום" in whole
    assert item["amount"].split(".")[1] in whole


def test_raw_is_the_file(gmail, sample_dir, sample_truth):
    item = sample_truth[0]
    message = gmail.users().messages().get(userId="me", id=item["message_id"], format="raw").execute()
    assert decode(message["raw"]) == (sample_dir / ALICE / item["file_name"]).read_bytes()
    assert "payload" not in message and message["sizeEstimate"] == len(decode(message["raw"]))


def test_metadata_and_minimal_formats(gmail, sample_truth):
    item = sample_truth[1]
    meta = gmail.users().messages().get(userId="me", id=item["message_id"], format="metadata",
                                        metadataHeaders=["Subject", "From"]).execute()
    assert sorted(header["name"] for header in meta["payload"]["headers"]) == ["From", "Subject"]
    assert "parts" not in meta["payload"]
    minimal = gmail.users().messages().get(userId="me", id=item["message_id"], format="minimal").execute()
    assert "payload" not in minimal and minimal["historyId"] and minimal["internalDate"] == str(truth_ms(item))


def test_fields_partial_response(gmail, sample_truth):
    item = next(item for item in sample_truth if item["attachments"])
    message = gmail.users().messages().get(userId="me", id=item["message_id"],
                                           fields="id,internalDate,payload(headers,parts(filename,body/attachmentId))"
                                           ).execute()
    assert set(message) == {"id", "internalDate", "payload"}
    assert set(message["payload"]) == {"headers", "parts"}
    assert all(set(part) <= {"filename", "body"} for part in message["payload"]["parts"])
    assert all(set(part["body"]) <= {"attachmentId"} for part in message["payload"]["parts"])
    page = gmail.users().messages().list(userId="me", maxResults=3, fields="messages/id,nextPageToken").execute()
    assert set(page) == {"messages", "nextPageToken"} and all(set(m) == {"id"} for m in page["messages"])


@pytest.mark.parametrize("call, status, reason", [
    (lambda g: g.users().messages().get(userId="me", id="0123456789abcdef"), 404, "notFound"),
    (lambda g: g.users().messages().get(userId="me", id="not-an-id"), 400, "invalidArgument"),
    (lambda g: g.users().messages().get(userId="me", id="0123456789abcdef", fields="id,(("), 400, "invalidArgument"),
    (lambda g: g.users().messages().list(userId=BOB), 403, "forbidden"),
    (lambda g: g.users().messages().list(userId="me", q="(" * 300), 400, "invalidArgument"),
    (lambda g: g.users().messages().list(userId="me", pageToken="garbage"), 400, "invalidArgument"),
    (lambda g: g.users().messages().attachments().get(userId="me", messageId="0123456789abcdef", id="x"),
     404, "notFound"),
    (lambda g: g.users().history().list(userId="me", startHistoryId="abc"), 400, "invalidArgument"),
])
def test_errors_come_in_googles_shape(gmail, call, status, reason):
    with pytest.raises(HttpError) as excinfo:
        call(gmail).execute()
    assert excinfo.value.resp.status == status
    error = error_of(excinfo)
    assert error["code"] == status and error["errors"][0]["reason"] == reason and error["status"]


def test_user_id_may_be_the_address(gmail):
    assert gmail.users().getProfile(userId=ALICE).execute()["emailAddress"] == ALICE


def test_each_mailbox_sees_only_its_own_mail(shared_emulator, sample_dir):
    bob = shared_emulator.service(BOB)
    ids = {item["id"] for item in bob.users().messages().list(userId="me").execute()["messages"]}
    truth = json.loads((sample_dir / BOB / "ground-truth.json").read_text())
    assert ids == {item["message_id"] for item in truth}


def test_batch_answers_every_part_by_its_id(shared_emulator, gmail, sample_truth):
    answers = {}
    batch = shared_emulator.batch(callback=lambda request_id, response, error: answers.__setitem__(
        request_id, (response, error)))
    wanted = sample_truth[:40]
    for item in wanted:
        batch.add(gmail.users().messages().get(userId="me", id=item["message_id"], format="metadata",
                                               metadataHeaders=["Subject"]), request_id=item["message_id"])
    batch.add(gmail.users().messages().get(userId="me", id="00000000deadbeef"), request_id="missing")
    batch.add(gmail.users().messages().list(userId="me", q="קבלה", maxResults=2), request_id="search")
    batch.execute()
    for item in wanted:
        response, error = answers[item["message_id"]]
        assert error is None and response["payload"]["headers"] == [{"name": "Subject", "value": item["subject"]}]
    assert answers["missing"][1].resp.status == 404
    assert len(answers["search"][0]["messages"]) == 2


def test_batch_also_served_at_gmails_batch_path(shared_emulator, gmail, sample_truth):
    answers = []
    batch = BatchHttpRequest(callback=lambda *args: answers.append(args),
                             batch_uri=shared_emulator.url + "batch/gmail/v1")
    batch.add(gmail.users().messages().get(userId="me", id=sample_truth[0]["message_id"], format="minimal"))
    batch.execute()
    assert answers[0][1]["id"] == sample_truth[0]["message_id"] and answers[0][2] is None


def test_batch_over_100_parts_is_refused(shared_emulator, gmail, sample_truth):
    batch = shared_emulator.batch()
    for index in range(101):
        batch.add(gmail.users().messages().get(userId="me", id=sample_truth[index % 60]["message_id"]))
    with pytest.raises(HttpError) as excinfo:
        batch.execute()
    assert excinfo.value.resp.status == 400


def test_unknown_paths_answer_in_googles_shape(shared_emulator):
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(shared_emulator.url + "gmail/v1/users/me/labels", timeout=5)
    assert excinfo.value.code == 404
    assert json.loads(excinfo.value.read())["error"]["status"] == "NOT_FOUND"
