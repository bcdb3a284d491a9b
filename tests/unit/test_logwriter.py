"""Log output never blocks the event loop: a stalled reader stalls the writer thread, not the caller."""

from __future__ import annotations

import io
import os
import threading

from app.infra.logwriter import LogWriter


def test_writes_to_a_stalled_pipe_return_at_once_and_nothing_is_lost():
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w")
    writer = LogWriter(stream)
    line = "x" * 1023 + "\n"
    done = threading.Event()

    def produce() -> None:
        for _ in range(1024):  # 1 MiB: sixteen times what a pipe holds before a direct write blocks
            writer.write(line)
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    assert done.wait(timeout=10), "a write blocked on a reader that does not read"
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(_read_all(read_fd, 1024 * 1024)), daemon=True)
    reader.start()
    writer.close()
    stream.close()
    reader.join(timeout=10)
    assert len(received) == 1024 * 1024
    assert received.decode() == line * 1024


def _read_all(fd: int, size: int) -> bytes:
    parts = []
    got = 0
    while got < size:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    os.close(fd)
    return b"".join(parts)


def test_in_memory_streams_are_written_at_once():
    stream = io.StringIO()
    LogWriter(stream).write("now\n")
    assert stream.getvalue() == "now\n"
