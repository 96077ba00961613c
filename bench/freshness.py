"""Heartbeat → status latency from two records of one benchmark: the heartbeats the workers wrote
(the Redis events stream; an entry id's milliseconds are the moment Redis took the XADD) and every
ReceiptSync version a watch delivered (with the local receive time; same machine, same clock).

A watched version "carries heartbeat news" when, against the previous version of the same object,
its phase became Started/Finished/Failed, or its progress counters changed. Its latency is the
receive time minus the write time of the *earliest* heartbeat of that attempt that holds the same
news (same phase for a transition; same counters for progress). Taking the earliest makes the figure
conservative: time a coalesced counter update waited in the operator counts against it.
"""
from __future__ import annotations

from typing import Any

from receiptsync_common import contract

NEWS_PHASES = (contract.PHASE_STARTED, contract.PHASE_FINISHED, contract.PHASE_FAILED)


def _counters(status: dict) -> tuple[int, int] | None:
    progress = status.get("progress") or {}
    if "messagesScanned" not in progress and "savedReceipts" not in progress:
        return None
    return int(progress.get("messagesScanned") or 0), int(progress.get("savedReceipts") or 0)


def heartbeat_index(entries: list[tuple[float, dict[str, str]]]) -> dict[str, list[tuple[float, str, tuple[int, int]]]]:
    """job_id -> [(written, phase, (scanned, saved))] in stream order."""
    index: dict[str, list[tuple[float, str, tuple[int, int]]]] = {}
    for written, fields in entries:
        job_id = fields.get(contract.HB_JOB_ID, "")
        counters = (int(fields.get(contract.HB_SCANNED) or 0), int(fields.get(contract.HB_SAVED) or 0))
        index.setdefault(job_id, []).append((written, fields.get(contract.HB_PHASE, ""), counters))
    return index


def latencies(events: list[tuple[float, str, dict]], entries: list[tuple[float, dict[str, str]]]) -> dict[str, Any]:
    beats = heartbeat_index(entries)
    previous: dict[str, dict] = {}
    transition: list[float] = []
    progress: list[float] = []
    unmatched = 0
    for received, kind, obj in events:
        name = (obj.get("metadata") or {}).get("name", "")
        status = obj.get("status") or {}
        before = previous.get(name, {})
        previous[name] = status
        if kind not in ("ADDED", "MODIFIED"):
            continue
        job_id = status.get("jobId") or ""
        phase = status.get("phase") or ""
        phase_news = phase in NEWS_PHASES and (phase != before.get("phase") or job_id != before.get("jobId"))
        counters = _counters(status)
        counter_news = (not phase_news and phase == contract.PHASE_STARTED and counters is not None
                        and job_id == before.get("jobId") and counters != _counters(before))
        if not (phase_news or counter_news):
            continue
        candidates = beats.get(job_id, [])
        if phase_news:
            match = next((w for w, p, _ in candidates if p == phase), None)
        else:
            match = next((w for w, p, c in candidates if p == contract.PHASE_STARTED and c == counters), None)
        if match is None:
            unmatched += 1  # e.g. Failed decided by the operator (WorkerLost), not by a heartbeat
            continue
        (transition if phase_news else progress).append(max(0.0, received - match))
    return {"transition": transition, "progress": progress, "all": transition + progress, "unmatched": unmatched,
            "heartbeats": sum(len(v) for v in beats.values())}


def version_changes(events: list[tuple[float, str, dict]]) -> dict[str, int]:
    """What changed from one watched version of a ReceiptSync to the next, counted: the status keys
    (and ``metadata`` when only that changed), e.g. ``phase,reason,message`` for a transition. Says
    what the operator's writes per run are made of."""
    previous: dict[str, dict] = {}
    counts: dict[str, int] = {}
    for _received, kind, obj in events:
        name = (obj.get("metadata") or {}).get("name", "")
        before = previous.get(name)
        previous[name] = obj
        if kind != "MODIFIED" or before is None:
            continue
        old, new = before.get("status") or {}, obj.get("status") or {}
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in ("runs",))
        label = ",".join(keys) if keys else ("runs" if old.get("runs") != new.get("runs") else "metadata")
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
