"""PDF text from untrusted attachments, read by pypdf in a helper process with a memory limit
(RLIMIT_AS) and a time limit per document, so a decompression bomb or a pathological file costs
one skipped PDF instead of the worker (its memory, its deadline, every retry).

The helper is started on first use and kept for the next PDFs; if it dies or overruns its time it
is killed and a new one starts for the next PDF. Protocol on its stdin/stdout: an 8-byte length
then the PDF bytes; back a status byte (``T`` text, ``E`` error), an 8-byte length, then UTF-8.

    python -m receiptsync_worker.pdfguard MEMORY_BYTES   # the helper itself
"""
from __future__ import annotations

import logging
import os
import select
import struct
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)

MAX_PDF_PAGES = 5  # enough for the totals on a receipt
MAX_TEXT_CHARS = 100_000
DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_PDF_BYTES = 5 * 1024 * 1024  # larger PDFs are stored but not read
_HEADER = struct.Struct(">Q")
_PROBLEMS = {"MemoryError": "memory", "LimitReachedError": "bomb"}


class PdfGuard:
    """``text(content) -> (text, problem)``; problem is None, or why no text was read:
    ``too_large``, ``bomb`` (decompresses past pypdf's limits), ``unreadable``, ``memory``,
    ``timeout`` or ``crashed``."""

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY_BYTES, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 max_bytes: int = DEFAULT_MAX_PDF_BYTES) -> None:
        self.memory_bytes = memory_bytes
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._helper: subprocess.Popen | None = None

    def text(self, content: bytes) -> tuple[str, str | None]:
        if len(content) > self.max_bytes:
            return "", "too_large"
        with self._lock:
            try:
                helper = self._running()
                helper.stdin.write(_HEADER.pack(len(content)) + content)
                helper.stdin.flush()
                status, payload = self._answer(helper, time.monotonic() + self.timeout)
            except TimeoutError:
                self._kill()
                return "", "timeout"
            except (OSError, EOFError, ValueError):
                self._kill()
                return "", "crashed"
        if status == b"T":
            return payload, None
        return "", _PROBLEMS.get(payload, "unreadable")

    def close(self) -> None:
        with self._lock:
            self._kill()

    def _running(self) -> subprocess.Popen:
        if self._helper is None or self._helper.poll() is not None:
            self._helper = subprocess.Popen(
                [sys.executable, "-m", "receiptsync_worker.pdfguard", str(self.memory_bytes)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
        return self._helper

    def _answer(self, helper: subprocess.Popen, deadline: float) -> tuple[bytes, str]:
        head = _read_exactly(helper.stdout, 1 + _HEADER.size, deadline)
        size = _HEADER.unpack(head[1:])[0]
        return head[:1], _read_exactly(helper.stdout, size, deadline).decode("utf-8", "replace")

    def _kill(self) -> None:
        helper, self._helper = self._helper, None
        if helper is not None:
            helper.kill()
            helper.wait()
            for stream in (helper.stdin, helper.stdout):
                try:
                    stream.close()
                except OSError:
                    pass


def _read_exactly(stream, size: int, deadline: float) -> bytes:
    chunks, left = [], size
    fd = stream.fileno()
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError()
        data = os.read(fd, min(left, 1 << 20))
        if not data:
            raise EOFError()
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------- the helper
def _serve(memory_bytes: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    import io

    import pypdf  # imported under the limit

    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = source.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return
        content = source.read(_HEADER.unpack(head)[0])
        try:
            reader = pypdf.PdfReader(io.BytesIO(content))
            texts = []
            for page in reader.pages[:MAX_PDF_PAGES]:
                contents = page.get_contents()
                if contents is not None:
                    contents.get_data()  # a decompression bomb raises here (extract_text would hide it)
                texts.append(page.extract_text() or "")
            text = "\n".join(texts)
            status, payload = b"T", text[:MAX_TEXT_CHARS]
        except MemoryError:
            status, payload = b"E", "MemoryError"
        except Exception as exc:  # noqa: BLE001 - any failure is "unreadable" for this one PDF
            status, payload = b"E", type(exc).__name__
        data = payload.encode("utf-8", "replace")
        sink.write(status + _HEADER.pack(len(data)) + data)
        sink.flush()


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)  # pypdf warns on stderr about broken files; nobody reads it
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MEMORY_BYTES)
