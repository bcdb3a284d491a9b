"""Real servers on 127.0.0.1 for tests that need a socket.

`serve_in_thread(app)`: an in-process ASGI app (so tests can keep injected clocks and knobs) behind
uvicorn on a free loopback port. `serve_process(argv)`: a subprocess, stopped by its PID.
"""

from __future__ import annotations

import asyncio
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


def rss_kib(pid: int) -> int:
    """Resident memory of process `pid` (Linux `/proc`), KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


RUN_ARGV = [
    "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--no-access-log",
    "--http", "app.api.middleware.header_limit:HeaderLimitedHttpToolsProtocol",
]  # fmt: skip
"""How `make run` starts the service (after the interpreter), less `--port`."""


@contextlib.contextmanager
def serve_facade(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """The service as `make run` starts it (sandbox, in a process of its own, quiet logs); yields its
    base URL and PID. `env` adds or overrides variables (`FACADE_API_KEYS`, ...)."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))}
    clean.update({"FACADE_SANDBOX": "true", "FACADE_CHANGES_POLL": "0", "FACADE_LOG_LEVEL": "WARNING", **env})
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [PYTHON, *RUN_ARGV, "--port", str(port)], env=clean, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until_up(f"{base}/healthz")
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RawConnection:
    """One keep-alive HTTP/1.1 connection spoken by hand: for requests httpx would take milliseconds to
    build (a 24 KB query string) or refuse to send (an oversized header block)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base: str) -> RawConnection:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
        return cls(reader, writer)

    async def get(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of `GET target`; the body is read by its
        `Content-Length`."""
        lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self.writer.drain()
        return await self.response()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        found = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                found[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(found.get("content-length", "0")))
        return int(status_line.split()[1]), found, body

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
