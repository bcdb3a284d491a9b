"""Real servers on 127.0.0.1 for tests that need a socket.

`serve_in_thread(app)`: an in-process ASGI app (so tests can keep injected clocks and knobs) behind
uvicorn on a free loopback port. `serve_process(argv)`: a subprocess, stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

from app.sandbox import loopback

free_port = loopback.free_port
"""A free port on 127.0.0.1 (re-exported for the tests)."""


def wait_until_up(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"server at {url} did not come up")


@contextlib.contextmanager
def serve_in_thread(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve `app` on 127.0.0.1; yields its base URL (`http://127.0.0.1:PORT`)."""
    with loopback.serve_in_thread(app, port=port) as url:
        yield url


@contextlib.contextmanager
def serve_process(
    argv: list[str], health_url: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `argv` (e.g. `[sys.executable, "-m", "uvicorn", ...]`), wait for `health_url`, stop by PID."""
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_up(health_url)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


PYTHON = sys.executable
