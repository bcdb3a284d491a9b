"""Request heads are bounded (`FACADE_MAX_HEADER_BYTES`, 64 KiB): past it the answer is a 431 problem,
from the server loop (the service as `make run` starts it, over a real socket) and from the app (for
a server started another way); clients that never finish a big head do not grow memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

import httpx

from tests.support.apps import API_KEY, fake_app, running
from tests.support.fake_backend import FakeBackend
from tests.support.servers import RUN_ARGV, RawConnection, rss_kib, serve_facade

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = "app.api.middleware.header_limit:HeaderLimitedHttpToolsProtocol"
KIB = 1024


def headers_of(total: int) -> dict[str, str]:
    """Headers of about `total` bytes, in 4 KiB lines."""
    return {f"X-Pad-{i}": "a" * (4 * KIB - 16) for i in range(total // (4 * KIB))}


def assert_431(status: int, headers: dict[str, str], body: bytes, limit: int) -> None:
    assert status == 431, (status, body[:200])
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff"
    problem = json.loads(body)
    assert problem["status"] == 431 and problem["type"] == "/problems/request-headers-too-large"
    assert str(limit) in problem["detail"]


async def send_unfinished_head(base: str, size: int) -> asyncio.StreamWriter:
    """Open a connection and send `size` bytes of one header that never ends; keep the socket."""
    host, port = base.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    chunk = b"a" * (256 * KIB)
    with contextlib.suppress(ConnectionError):
        for _ in range(size // len(chunk)):
            writer.write(chunk)
            await writer.drain()
    return writer


def test_the_server_loop_answers_431_past_the_limit_and_keeps_memory_flat() -> None:
    with serve_facade({"FACADE_API_KEYS": API_KEY}) as (base, pid):

        async def scenario() -> float:
            ok = await RawConnection.open(base)
            status, _, _ = await ok.get("/healthz", headers_of(56 * KIB))  # under the limit
            assert status == 200
            status, headers, body = await ok.get("/meters", {"X-API-Key": API_KEY, **headers_of(72 * KIB)})
            assert_431(status, headers, body, 64 * KIB)
            assert await ok.reader.read() == b""  # and the connection is closed
            await ok.close()

            huge = await send_unfinished_head(base, 50 * 1024 * KIB)  # a 50 MB head is refused early
            huge.close()

            before = rss_kib(pid)
            writers = await asyncio.gather(*(send_unfinished_head(base, 5 * 1024 * KIB) for _ in range(20)))
            await asyncio.sleep(0.5)
            grown = (rss_kib(pid) - before) / 1024
            for writer in writers:
                writer.close()
            alive = await RawConnection.open(base)  # the server goes on serving
            assert (await alive.get("/healthz"))[0] == 200
            await alive.close()
            return grown

        grown = asyncio.run(asyncio.wait_for(scenario(), timeout=240))
    assert grown < 20, f"20 unfinished 5 MB heads grew RSS by {grown:.1f} MiB"


def test_the_limit_is_a_setting() -> None:
    with serve_facade({"FACADE_MAX_HEADER_BYTES": str(16 * KIB)}) as (base, _):

        async def scenario() -> None:
            connection = await RawConnection.open(base)
            status, headers, body = await connection.get("/healthz", headers_of(20 * KIB))
            assert_431(status, headers, body, 16 * KIB)
            await connection.close()

        asyncio.run(asyncio.wait_for(scenario(), timeout=60))


async def test_the_app_answers_431_itself_whatever_server_runs_it() -> None:
    app = fake_app({"waltero": FakeBackend("waltero", meters=2)})
    async with running(app) as c:
        assert (await c.get("/meters")).status_code == 200
        assert (await c.get("/meters")).headers["x-cache"] == "HIT"
        for path in ("/meters", "/healthz", "/nowhere"):  # a cached answer is no exception
            r = await c.get(path, headers=headers_of(72 * KIB))
            assert_431(r.status_code, dict(r.headers), r.content, 64 * KIB)
            assert r.headers["x-request-id"]
        assert (await c.get("/meters", headers=headers_of(56 * KIB))).status_code == 200
        metrics = (await c.get("/metrics")).text
        refused = re.findall(r'^facade_http_requests_total\{[^}]*status="431"[^}]*\} (\S+)$', metrics, re.M)
        assert sum(float(n) for n in refused) == 3.0, refused


def test_make_run_and_the_image_start_the_bounded_server_loop() -> None:
    assert f"--http {PROTOCOL}" in (ROOT / "Makefile").read_text()
    assert f'"--http", "{PROTOCOL}"' in (ROOT / "Dockerfile").read_text()
    assert RUN_ARGV[-2:] == ["--http", PROTOCOL]


async def test_httpx_is_not_the_one_refusing() -> None:
    # the client sends what the tests above ask for (httpx has no header limit of its own)
    request = httpx.Request("GET", "http://x/", headers=headers_of(72 * KIB))
    assert sum(len(k) + len(v) for k, v in request.headers.raw) > 64 * KIB
