"""Log output that never blocks the event loop.

A write to stderr blocks when its reader (a terminal, a pipe to a log shipper) is slow. `LogWriter`
hands OS-backed streams to one daemon thread through a queue, so the loop only appends a string;
in-memory streams (tests' `io.StringIO`) cannot block and are written at once. `close()` writes
everything queued (on reconfiguration and at exit).

The access log, one line per request, goes through the queue. Other records (start, shutdown,
warnings: a handful per process) are written at once by `write_now`, so the last lines before a
process ends by a signal (uvicorn re-raises SIGTERM after a clean shutdown, and no exit hook runs
then) are never lost in the queue.
"""

from __future__ import annotations

import atexit
import io
import logging
import queue
import threading
from typing import Any


def _is_os_stream(stream: Any) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False
    return True


class LogWriter:
    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._threaded = _is_os_stream(stream)
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if self._threaded:
            self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
            self._thread.start()
            atexit.register(self.close)

    def write(self, text: str) -> None:
        if self._threaded:
            self._queue.put(text)
        else:
            self._write(text)

    def write_now(self, text: str) -> None:
        """Write `text` before returning (rare records that must not wait behind the queue)."""
        self._write(text)

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # a closed stream must not break serving
                pass

    def _run(self) -> None:
        while True:
            text = self._queue.get()
            if text is None:
                break
            parts = [text]
            while True:  # write whatever else is waiting in one go
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._write("".join(parts))
                    self._done.set()
                    return
                parts.append(more)
            self._write("".join(parts))
        self._done.set()

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._done.wait(timeout=5)


class WriterHandler(logging.Handler):
    """A logging handler writing through the same `LogWriter` as the access log, at once."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write_now(self.format(record) + "\n")
        except Exception:
            self.handleError(record)
