"""What reaches the app is answered as problem+json; what uvicorn refuses before the app (malformed
requests) is its own plain 400, documented in the README, and never stops the server."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from app.factory import create_app
from app.infra.config import Settings
from tests.support.servers import serve_in_thread


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))
    with serve_in_thread(app) as url:
        yield int(url.rsplit(":", 1)[1])


def raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_a_method_the_api_lacks_is_a_problem(port):
    status, headers, body = raw(port, b"DELETE /meters HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 405
    assert headers["content-type"] == "application/problem+json"
    assert headers["allow"] == "GET"
    assert b'"status":405' in body


def test_head_answers_headers_only(port):
    status, headers, body = raw(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    assert headers["content-length"] == "15"
    assert body == b""


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"FOO BAR BAZ QUX\r\nHost: x\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad\x01: y\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ],
    ids=["bad request line", "over-long target", "bad header byte", "garbage"],
)
def test_malformed_requests_get_uvicorns_plain_400_and_the_server_goes_on(port, request_bytes):
    status, headers, body = raw(port, request_bytes)
    assert status == 400
    assert headers["content-type"].startswith("text/plain")
    assert body == b"Invalid HTTP request received."
    assert raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200
