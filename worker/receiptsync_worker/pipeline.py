"""List → fetch → save, overlapped: the quota, not the round trips, sets the pace.

* one lister thread pages through message ids and cuts them into batch-sized chunks;
* several fetcher threads turn chunks into receipt rows (their quota reservations queue up in the
  shared bucket, so while one waits for Gmail's answer the next is already reserved);
* the calling thread saves chunks as they come, merging whatever is ready into one transaction.

Stopping (SIGTERM, deadline, an error): the lister and idle fetchers quit, chunks already fetched are
still saved, then ``run`` returns.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from .gmail_client import GmailClient, Stopped

if TYPE_CHECKING:
    from .fetch import FetchedChunk

log = logging.getLogger(__name__)
_END = object()  # a fetcher finished
POLL_SECONDS = 0.2


@dataclasses.dataclass
class PipelineResult:
    listed: int = 0  # ids taken from the listing (after filters, within the cap)
    truncated: bool = False  # maxMessages left ids of the window for the next run
    error: BaseException | None = None
    timed_out: bool = False
    quarantined: set[str] = dataclasses.field(default_factory=set)  # listed, but quarantined: not fetched


@dataclasses.dataclass
class IdFilter:
    """Which listed ids the attempt works on. Only ids it actually fetches count against the cap."""

    done: set[str]  # finished in this window by an earlier attempt or capped run: not fetched
    only: set[str] | None = None  # Gmail history's added ids, when history is in use
    already_saved: Callable[[list[str]], set[str]] | None = None  # incremental: skip stored receipts
    max_messages: int = 5000  # what this run may fetch, counting what its earlier attempts fetched
    quarantined: set[str] = dataclasses.field(default_factory=set)  # extraction failed too often


def chunked(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for message_id in ids:
        chunk.append(message_id)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def select_ids(page: list[str], id_filter: IdFilter, seen: set[str], budget: int,
               quarantined: set[str] | None = None) -> tuple[list[str], int, bool]:
    """(ids to fetch from this page, cap budget left, whether ids were left over for lack of budget).
    Ids already done, quarantined or (incremental) already saved are dropped *before* the budget is
    spent: the cap counts fetches, not ids seen. Pure apart from ``seen``, ``quarantined`` (ids
    dropped as quarantined are added) and ``already_saved``."""
    fresh = [mid for mid in dict.fromkeys(page) if mid not in seen]
    seen.update(fresh)
    if id_filter.only is not None:
        fresh = [mid for mid in fresh if mid in id_filter.only]
    fresh = [mid for mid in fresh if mid not in id_filter.done]
    if id_filter.quarantined:
        if quarantined is not None:
            quarantined.update(mid for mid in fresh if mid in id_filter.quarantined)
        fresh = [mid for mid in fresh if mid not in id_filter.quarantined]
    if id_filter.already_saved and fresh:
        stored = id_filter.already_saved(fresh)
        fresh = [mid for mid in fresh if mid not in stored]
    budget = max(0, budget)
    todo = fresh[:budget]
    return todo, budget - len(todo), len(fresh) > len(todo)


class ByteBudget:
    """Bounds the attachment bytes held between fetching and saving, across fetcher threads. One
    request larger than the whole budget still goes through when nothing else is held."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._cond = threading.Condition()

    def acquire(self, amount: int, stop: threading.Event) -> bool:
        with self._cond:
            while self.held and self.held + amount > self.limit:
                if stop.is_set():
                    return False
                self._cond.wait(POLL_SECONDS)
            self.held += amount
            return True

    def release(self, amount: int) -> None:
        if amount:
            with self._cond:
                self.held = max(0, self.held - amount)
                self._cond.notify_all()


class Pipeline:
    def __init__(
        self,
        *,
        client: GmailClient,
        save: Callable[[FetchedChunk], None],
        stop: threading.Event,
        deadline: float,
        batch_size: int,
        fetchers: int,
        id_filter: IdFilter,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[GmailClient, list[str], int], FetchedChunk] | None = None,
        on_progress: Callable[[], None] = lambda: None,
        release_bytes: Callable[[int], None] = lambda held: None,
    ) -> None:
        self._client = client
        self._save = save
        self._stop = stop
        self._deadline = deadline
        self._batch_size = batch_size
        self._fetchers = fetchers
        self._filter = id_filter
        self._clock = clock
        self._fetch_chunk = fetch or _fetch_chunk
        self._progress = on_progress
        self._release_bytes = release_bytes
        self._chunks: queue.Queue = queue.Queue(maxsize=fetchers * 2)
        # Bounded too: fetched chunks hold attachment bytes until they are saved.
        self._fetched: queue.Queue = queue.Queue(maxsize=max(1, fetchers))
        self._saver_gone = threading.Event()
        self.result = PipelineResult()
        self._error_lock = threading.Lock()

    def run(self, pages: Iterator[list[str]]) -> PipelineResult:
        threads = [threading.Thread(target=self._list, args=(pages,), name="lister", daemon=True)]
        threads += [threading.Thread(target=self._fetch, name=f"fetcher-{i}", daemon=True)
                    for i in range(self._fetchers)]
        for thread in threads:
            thread.start()
        try:
            self._save_until_fetchers_end()
        except BaseException as exc:  # a save failed: stop everyone, report it
            self._fail(exc)
            self._stop.set()
            self._saver_gone.set()
        for thread in threads:
            thread.join(timeout=30)
        return self.result

    def _fail(self, exc: BaseException) -> None:
        with self._error_lock:
            if self.result.error is None:
                self.result.error = exc

    # ---------------------------------------------------------------- lister
    def _list(self, pages: Iterator[list[str]]) -> None:
        budget = self._filter.max_messages
        seen: set[str] = set()
        try:
            for page in pages:
                if self._stop.is_set():
                    return
                self._progress()
                todo, budget, left_over = select_ids(page, self._filter, seen, budget, self.result.quarantined)
                self.result.listed += len(todo)
                for chunk in chunked(todo, self._batch_size):
                    if not self._put(chunk):
                        return
                if left_over:  # the cap stopped us with work left: the next run continues
                    self.result.truncated = True
                    return
        except Stopped:
            return
        except BaseException as exc:
            self._fail(exc)
            self._stop.set()
        finally:
            for _ in range(self._fetchers):
                self._chunks.put(_END)

    def _put(self, chunk: list[str]) -> bool:
        while not self._stop.is_set():
            try:
                self._chunks.put(chunk, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    # ---------------------------------------------------------------- fetchers
    def _fetch(self) -> None:
        try:
            while True:
                chunk = self._chunks.get()
                if chunk is _END:
                    return
                if self._stop.is_set():
                    continue  # drain to the end marker without fetching
                try:
                    fetched = self._fetch_chunk(self._client, chunk, self._batch_size)
                    self._progress()
                    self._hand_over(fetched)
                except Stopped:
                    continue
                except BaseException as exc:
                    self._fail(exc)
                    self._stop.set()
        finally:
            self._hand_over(_END)

    def _hand_over(self, item: object) -> None:
        while True:
            try:
                self._fetched.put(item, timeout=POLL_SECONDS)
                return
            except queue.Full:
                if self._saver_gone.is_set():
                    return

    # ---------------------------------------------------------------- saver (calling thread)
    def _save_until_fetchers_end(self) -> None:
        running = self._fetchers
        while running:
            if not self._stop.is_set() and self._clock() >= self._deadline:
                self.result.timed_out = True
                self._stop.set()
            try:
                item = self._fetched.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            ready = [item]
            while True:  # merge what else is ready into the same transaction
                try:
                    ready.append(self._fetched.get_nowait())
                except queue.Empty:
                    break
            running -= sum(1 for x in ready if x is _END)
            chunks = [x for x in ready if x is not _END]
            if chunks:
                merged = _merge(chunks)
                self._save(merged)
                self._release_bytes(merged.held_bytes)
                self._progress()


def _fetch_chunk(client: GmailClient, ids: list[str], size: int) -> FetchedChunk:
    from .fetch import fetch_chunk  # the extraction stack loads only when there is mail to read

    return fetch_chunk(client, ids, size)


def _merge(chunks: list[FetchedChunk]) -> FetchedChunk:
    if len(chunks) == 1:
        return chunks[0]
    from .fetch import FetchedChunk
    merged = FetchedChunk(message_ids=[], receipts=[], attachments=[])
    for chunk in chunks:
        merged.message_ids.extend(chunk.message_ids)
        merged.receipts.extend(chunk.receipts)
        merged.attachments.extend(chunk.attachments)
        merged.skipped.update(chunk.skipped)
        merged.failed.update(chunk.failed)
        merged.held_bytes += chunk.held_bytes
    return merged
