"""An ASGI app served by uvicorn on 127.0.0.1 in a thread: the doctor's loopback emulators, and the
tests' and benchmarks' servers that must share this process's fake clocks and knobs."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(
    app: Any,
    *,
    port: int | None = None,
    sock: socket.socket | None = None,
    lifespan: Literal["auto", "on", "off"] = "auto",
) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port, `port`, or the listening `sock`); yields its base URL and
    stops the server on exit. Raises `RuntimeError` when uvicorn does not start within 20 s."""
    if sock is not None:
        port = int(sock.getsockname()[1])
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan))
    kwargs = {"sockets": [sock]} if sock is not None else {}
    thread = threading.Thread(target=server.run, kwargs=kwargs, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
