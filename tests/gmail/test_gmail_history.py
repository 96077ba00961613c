"""Mail arriving while the emulator runs, history.list paging, and Gmail's 404 for expired history."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from googleapiclient.errors import HttpError

from gmail_helpers import ALICE, RunningEmulator, write_message
from receiptsync_sandbox.gmail.message import message_id_for


def history_all(gmail, start: str, **params) -> tuple[list[dict], str]:
    records, request, answer = [], gmail.users().history().list(userId="me", startHistoryId=start, **params), {}
    while request is not None:
        answer = request.execute()
        records += answer.get("history", [])
        request = gmail.users().history().list_next(request, answer)
    return records, answer["historyId"]


def assert_expired(call):
    with pytest.raises(HttpError) as excinfo:
        call.execute()
    assert excinfo.value.resp.status == 404
    error = json.loads(excinfo.value.content)["error"]
    assert error["message"] == "Requested entity was not found."
    assert error["errors"][0]["reason"] == "notFound" and error["status"] == "NOT_FOUND"


def test_new_mail_appears_in_list_and_history(emulator, mailbox_dir):
    gmail = emulator.service()
    start = gmail.users().getProfile(userId="me").execute()["historyId"]
    assert history_all(gmail, start) == ([], start)

    when = dt.datetime(2025, 7, 2, 9, 30, tzinfo=dt.timezone.utc)  # newer than every sample
    write_message(mailbox_dir / ALICE, "late-1.eml", subject="Invoice #777", date=when, text="Total: ₪ 77.00")
    newest = gmail.users().messages().list(userId="me", maxResults=1).execute()["messages"][0]
    message = gmail.users().messages().get(userId="me", id=newest["id"], format="minimal").execute()
    assert message["internalDate"] == str(int(when.timestamp() * 1000))
    assert int(message["historyId"]) > int(start)

    records, current = history_all(gmail, start, historyTypes="messageAdded")
    assert [record["messagesAdded"][0]["message"]["id"] for record in records] == [newest["id"]]
    assert records[0]["id"] == message["historyId"] == current
    assert gmail.users().getProfile(userId="me").execute()["historyId"] == current
    assert gmail.users().messages().list(userId="me", q="invoice 777").execute()["resultSizeEstimate"] == 1


def test_history_pages_in_arrival_order(emulator, mailbox_dir):
    gmail = emulator.service()
    start = gmail.users().getProfile(userId="me").execute()["historyId"]
    names = [f"burst-{index}.eml" for index in range(5)]
    for index, name in enumerate(names):
        write_message(mailbox_dir / ALICE, name, subject=f"note {index}",
                      date=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc) - dt.timedelta(days=index))
        gmail.users().messages().list(userId="me", maxResults=1).execute()  # the emulator notices each one
    records, current = history_all(gmail, start, maxResults=2)
    ids = [record["messages"][0]["id"] for record in records]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert [int(record["id"]) for record in records] == sorted(int(record["id"]) for record in records)
    subjects = []
    for message_id in ids:
        message = gmail.users().messages().get(userId="me", id=message_id, format="metadata",
                                               metadataHeaders=["Subject"]).execute()
        subjects.append(message["payload"]["headers"][0]["value"])
    assert subjects == [f"note {index}" for index in range(5)]  # arrival order, although dated backwards
    assert current == records[-1]["id"]


def test_start_ids_older_than_retention_answer_404(emulator):
    gmail = emulator.service()
    oldest_start = "1"
    assert history_all(gmail, oldest_start)[0]  # everything retained: all messages are history
    emulator.configure(history_retention=3)
    assert_expired(gmail.users().history().list(userId="me", startHistoryId=oldest_start))
    current = gmail.users().getProfile(userId="me").execute()["historyId"]
    assert history_all(gmail, current)[0] == []


def test_expire_endpoint_and_knob_force_404(emulator, mailbox_dir):
    gmail = emulator.service()
    before = gmail.users().getProfile(userId="me").execute()["historyId"]
    emulator.admin("_emulator/history/expire", {"mailbox": ALICE})
    assert_expired(gmail.users().history().list(userId="me", startHistoryId=str(int(before) - 1)))
    assert history_all(gmail, before)[0] == []  # the current id is still a valid start
    emulator.configure(history_expired=True)
    assert_expired(gmail.users().history().list(userId="me", startHistoryId=before))
    emulator.configure(history_expired=False)
    assert history_all(gmail, before)[0] == []


def test_state_dir_keeps_history_ids_across_restarts(mailbox_dir, tmp_path):
    state = tmp_path / "state"
    with RunningEmulator(mailbox_dir, state_dir=state) as first:
        gmail = first.service()
        write_message(mailbox_dir / ALICE, "zz-old-date.eml", subject="old but new",
                      date=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
        first.admin("_emulator/rescan", {})
        ids_before = {item["id"]: gmail.users().messages().get(userId="me", id=item["id"], format="minimal")
                      .execute()["historyId"]
                      for item in gmail.users().messages().list(userId="me").execute()["messages"]}
    with RunningEmulator(mailbox_dir, state_dir=state) as second:
        gmail = second.service()
        ids_after = {item["id"]: gmail.users().messages().get(userId="me", id=item["id"], format="minimal")
                     .execute()["historyId"]
                     for item in gmail.users().messages().list(userId="me").execute()["messages"]}
    assert ids_after == ids_before
    late = message_id_for("zz-old-date.eml")  # dated 2020 but arrived last: the highest history id
    assert int(ids_before[late]) == max(int(value) for value in ids_before.values())


def test_a_file_caught_half_written_is_read_again(emulator, mailbox_dir):
    emulator.configure(rescan_interval_s=0)
    gmail = emulator.service()
    path = mailbox_dir / ALICE / "slow-writer.eml"
    path.write_bytes(b"From: a@example.org\r\nSubject: Invoice")  # the writer is not done yet
    found = gmail.users().messages().list(userId="me", q="invoice").execute()["messages"]
    message_id = message_id_for("slow-writer.eml")
    assert message_id in {item["id"] for item in found}
    first = gmail.users().messages().get(userId="me", id=message_id, format="minimal").execute()
    with path.open("ab") as handle:
        handle.write(b" #42\r\nDate: Tue, 01 Jul 2025 10:00:00 +0000\r\n\r\nTotal: $42.00\r\n")
    done = gmail.users().messages().get(userId="me", id=message_id, format="metadata",
                                        metadataHeaders=["Subject"]).execute()
    assert done["payload"]["headers"] == [{"name": "Subject", "value": "Invoice #42"}]
    assert done["historyId"] == first["historyId"]
    assert gmail.users().messages().list(userId="me", q='"$42.00"').execute()["messages"][0]["id"] == message_id
