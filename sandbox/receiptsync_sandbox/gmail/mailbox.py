"""Mailboxes read from folders of .eml files: MDIR/<address>/*.eml.

A folder may grow while the emulator runs: each new file becomes a new message with a history id
higher than any before (the folder is re-listed when its mtime changes, and at least every
``rescan_interval_s`` when used). Writers should write to a temporary name and rename to ``*.eml``.

History ids: on first sight, files are ordered by Date (then name) and numbered upwards with small
gaps (Gmail's ids are increasing but not contiguous). With a state dir the numbering is saved, so a
restart keeps the ids of files it already knew and numbers only the new ones after them.
"""
from __future__ import annotations

import bisect
import json
import os
import time
from pathlib import Path
from typing import Callable

from .message import StoredMessage, parse_message

FIRST_HISTORY_ID = 1000


class Mailbox:
    def __init__(self, address: str, folder: Path, state_file: Path | None, rescan_interval: Callable[[], float]):
        self.address = address
        self.folder = folder
        self.state_file = state_file
        self.rescan_interval = rescan_interval
        self.messages: dict[str, StoredMessage] = {}
        self.by_file: dict[str, StoredMessage] = {}
        self.signatures: dict[str, tuple[int, int]] = {}  # file name -> (size, mtime_ns) when read
        self.by_header: dict[str, StoredMessage] = {}  # Message-ID header -> message, for threads
        self.ordered: list[StoredMessage] = []  # oldest first by (internalDate, historyId)
        self.history: list[StoredMessage] = []  # by history id, ascending
        self.assigned: dict[str, int] = {}  # file name -> history id, kept across restarts
        self.last_history_id = FIRST_HISTORY_ID
        self.expired_below = 0  # history.list with a start id below this answers 404
        self.version = 0  # bumps on every change, keys caches of search results
        self._folder_mtime = -1
        self._scanned_at = 0.0
        self._load_state()

    # ------------------------------------------------------------ reading the folder

    def refresh(self, force: bool = False) -> None:
        """Re-list the folder if it changed (or has not been looked at for a while)."""
        try:
            mtime = self.folder.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -2
        stale = time.monotonic() - self._scanned_at >= self.rescan_interval()
        if force or mtime != self._folder_mtime or stale:
            self._folder_mtime = mtime
            self._scanned_at = time.monotonic()
            self._scan()

    def _scan(self) -> None:
        """Pick up new files, drop removed ones, and re-read any whose size or mtime changed
        (a file caught half-written is read again once complete; it keeps its ids)."""
        present = _eml_files(self.folder)
        gone = [name for name in self.by_file if name not in present]
        changed = [name for name, signature in present.items()
                   if name in self.by_file and self.signatures.get(name) != signature]
        fresh = [name for name in present if name not in self.by_file]
        if not gone and not changed and not fresh:
            return
        for name in gone + changed:
            self._forget(self.by_file[name])
        arrived = [_read(self.folder, name) for name in changed + fresh]
        now = time.monotonic()
        for message in arrived:
            if message is not None:
                message.arrived_at = now
        self.signatures = present
        self._add([message for message in arrived if message is not None])
        self.version += 1

    def _forget(self, message: StoredMessage) -> None:
        del self.by_file[message.file_name]
        del self.messages[message.id]
        self.ordered.remove(message)
        self.history.remove(message)
        self.by_header.pop(message.message_id_header, None)

    def _add(self, arrived: list[StoredMessage]) -> None:
        arrived.sort(key=lambda message: (message.internal_ms, message.file_name))
        numbered_now = False
        for message in arrived:
            if message.file_name not in self.assigned:
                self.last_history_id += 1 + int(message.id[:4], 16) % 3
                self.assigned[message.file_name] = self.last_history_id
                numbered_now = True
            message.history_id = self.assigned[message.file_name]
            self.messages[message.id] = message
            self.by_file[message.file_name] = message
        self.ordered = sorted(self.messages.values(), key=_list_key)
        self.history = sorted(self.messages.values(), key=lambda message: message.history_id)
        self.by_header = {message.message_id_header: message for message in self.history if message.message_id_header}
        if numbered_now:
            self._save_state()

    # ------------------------------------------------------------ history numbering kept on disk

    def _load_state(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        state = json.loads(self.state_file.read_text())
        self.assigned = {name: int(number) for name, number in state.get("assigned", {}).items()}
        self.last_history_id = max([FIRST_HISTORY_ID, int(state.get("last_history_id", 0)), *self.assigned.values()])
        self.expired_below = int(state.get("expired_below", 0))

    def _save_state(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".tmp")
        state = {"assigned": self.assigned, "last_history_id": self.last_history_id,
                 "expired_below": self.expired_below}
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.state_file)

    # ------------------------------------------------------------ questions the API asks

    @property
    def history_id(self) -> int:
        """The mailbox's current history id (getProfile, history.list)."""
        return self.last_history_id

    def thread_id(self, message: StoredMessage) -> str:
        """Gmail's thread id is the id of the thread's first message."""
        if not message.thread_key:
            return message.id
        first = self.by_header.get(message.thread_key)
        return first.id if first is not None else message.id

    def history_floor(self, retention: int | None) -> int:
        """The smallest start id history.list still accepts: older history was dropped."""
        floor = self.expired_below
        if retention is not None and len(self.history) > retention:
            dropped = self.history[len(self.history) - retention - 1] if retention >= 0 else self.history[-1]
            floor = max(floor, dropped.history_id)
        return floor

    def expire_history(self) -> None:
        """Forget all history so far: start ids older than now answer 404."""
        self.expired_below = self.last_history_id
        self._save_state()

    def added_after(self, start_history_id: int) -> list[StoredMessage]:
        keys = [message.history_id for message in self.history]
        return self.history[bisect.bisect_right(keys, start_history_id):]


def _list_key(message: StoredMessage) -> tuple[int, int]:
    return message.internal_ms, message.history_id


def _eml_files(folder: Path) -> dict[str, tuple[int, int]]:
    """``*.eml`` file name -> (size, mtime_ns); dot-files are writes in progress."""
    try:
        entries = os.scandir(folder)
    except FileNotFoundError:
        return {}
    found = {}
    with entries:
        for entry in entries:
            if entry.name.endswith(".eml") and not entry.name.startswith(".") and entry.is_file():
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue
                found[entry.name] = (info.st_size, info.st_mtime_ns)
    return found


def _read(folder: Path, name: str) -> StoredMessage | None:
    path = folder / name
    try:
        raw = path.read_bytes()
        mtime_ms = int(path.stat().st_mtime * 1000)
    except FileNotFoundError:  # removed between listing and reading
        return None
    return parse_message(name, raw, mtime_ms)


class MailboxDirectory:
    """All mailboxes under MDIR, found by folder name (the address, compared case-insensitively)."""

    def __init__(self, root: Path, state_dir: Path | None, rescan_interval: Callable[[], float]):
        self.root = Path(root)
        self.state_dir = Path(state_dir) if state_dir else None
        self.rescan_interval = rescan_interval
        self.mailboxes: dict[str, Mailbox] = {}

    def get(self, address: str) -> Mailbox | None:
        """The mailbox for ``address``, refreshed; None if there is no such folder."""
        key = address.strip().lower()
        mailbox = self.mailboxes.get(key)
        if mailbox is None:
            mailbox = self._open(key)
        if mailbox is not None:
            mailbox.refresh()
        return mailbox

    def addresses(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(entry.name.lower() for entry in self.root.iterdir() if entry.is_dir())

    def all(self) -> list[Mailbox]:
        """Every mailbox folder's mailbox, refreshed."""
        return [mailbox for mailbox in map(self.get, self.addresses()) if mailbox is not None]

    def load_all(self) -> None:
        self.all()

    def _open(self, key: str) -> Mailbox | None:
        folder = next((self.root / name for name in _subfolders(self.root) if name.lower() == key), None)
        if folder is None:
            return None
        state_file = self.state_dir / f"{key}.history.json" if self.state_dir else None
        mailbox = Mailbox(key, folder, state_file, self.rescan_interval)
        self.mailboxes[key] = mailbox
        return mailbox


def _subfolders(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return [entry.name for entry in root.iterdir() if entry.is_dir()]
