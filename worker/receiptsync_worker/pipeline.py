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
from typing import Callable, Iterable, Iterator

from .fetch import FetchedChunk, fetch_chunk
from .gmail_client import GmailClient, Stopped

log = logging.getLogger(__name__)
_END = object()  # a fetcher finished
POLL_SECONDS = 0.2


@dataclasses.dataclass
class PipelineResult:
    listed: int = 0  # ids taken from the listing (after filters, within the cap)
    truncated: bool = False  # maxMessages stopped the listing early
    error: BaseException | None = None
    timed_out: bool = False


@dataclasses.dataclass
class IdFilter:
    """Which listed ids the attempt works on."""

    done: set[str]  # finished by an earlier attempt of this run (counted against the cap, not fetched)
    only: set[str] | None = None  # Gmail history's added ids, when history is in use
    already_saved: Callable[[list[str]], set[str]] | None = None  # incremental: skip stored receipts
    max_messages: int = 5000


def chunked(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for message_id in ids:
        chunk.append(message_id)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def select_ids(page: list[str], id_filter: IdFilter, seen: set[str], budget: int) -> tuple[list[str], int, bool]:
    """(ids to fetch from this page, cap budget left, whether the cap cut the page). Pure apart from
    ``seen`` (ids already taken) and ``already_saved``."""
    fresh = [mid for mid in page if mid not in seen]
    if id_filter.only is not None:
        fresh = [mid for mid in fresh if mid in id_filter.only]
    cut = len(fresh) > budget
    fresh = fresh[:budget]
    seen.update(fresh)
    budget -= len(fresh)
    todo = [mid for mid in fresh if mid not in id_filter.done]
    if id_filter.already_saved and todo:
        stored = id_filter.already_saved(todo)
        todo = [mid for mid in todo if mid not in stored]
    return todo, budget, cut


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
    ) -> None:
        self._client = client
        self._save = save
        self._stop = stop
        self._deadline = deadline
        self._batch_size = batch_size
        self._fetchers = fetchers
        self._filter = id_filter
        self._clock = clock
        self._chunks: queue.Queue = queue.Queue(maxsize=fetchers * 2)
        self._fetched: queue.Queue = queue.Queue()
        self.result = PipelineResult()
        self._error_lock = threading.Lock()

    def run(self, pages: Iterator[list[str]]) -> PipelineResult:
        threads = [threading.Thread(target=self._list, args=(pages,), name="lister", daemon=True)]
        threads += [threading.Thread(target=self._fetch, name=f"fetcher-{i}", daemon=True) for i in range(self._fetchers)]
        for thread in threads:
            thread.start()
        try:
            self._save_until_fetchers_end()
        except BaseException as exc:  # a save failed: stop everyone, report it
            self._fail(exc)
            self._stop.set()
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
                todo, budget, cut = select_ids(page, self._filter, seen, budget)
                self.result.listed = len(seen)
                for chunk in chunked(todo, self._batch_size):
                    if not self._put(chunk):
                        return
                if budget <= 0:
                    # More ids than the cap allows if this page was cut or another page may follow.
                    self.result.truncated = cut or self._has_more(pages)
                    return
        except Stopped:
            return
        except BaseException as exc:
            self._fail(exc)
            self._stop.set()
        finally:
            for _ in range(self._fetchers):
                self._chunks.put(_END)

    @staticmethod
    def _has_more(pages: Iterator[list[str]]) -> bool:
        try:
            return bool(next(pages))
        except StopIteration:
            return False

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
                    self._fetched.put(fetch_chunk(self._client, chunk, self._batch_size))
                except Stopped:
                    continue
                except BaseException as exc:
                    self._fail(exc)
                    self._stop.set()
        finally:
            self._fetched.put(_END)

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
                self._save(_merge(chunks))


def _merge(chunks: list[FetchedChunk]) -> FetchedChunk:
    if len(chunks) == 1:
        return chunks[0]
    merged = FetchedChunk(message_ids=[], receipts=[], attachments=[])
    for chunk in chunks:
        merged.message_ids.extend(chunk.message_ids)
        merged.receipts.extend(chunk.receipts)
        merged.attachments.extend(chunk.attachments)
    return merged
