"""The vendor client's per-call shortcuts keep httpx's behaviour, over a real socket, with both socket
layers: a cookie a vendor sets is still sent back (the jar is only skipped for responses without
`Set-Cookie`), proxy variables in the environment are ignored, and `FACADE_UPSTREAM_PROXY` routes every
vendor call through the proxy it names."""

from __future__ import annotations

import asyncio
import base64
import http.cookiejar
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.infra.config import Settings
from app.infra.metrics import Metrics
from app.infra.upstream import build_client
from tests.support.servers import serve_in_thread


def _cookie_vendor() -> Starlette:
    async def login(request: Request) -> JSONResponse:
        response = JSONResponse({"ok": True})
        response.set_cookie("session", "s-123", path="/")
        return response

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"cookie": request.headers.get("cookie")})

    return Starlette(routes=[Route("/login", login), Route("/echo", echo)])


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_cookie_set_by_the_vendor_is_sent_back_and_other_responses_skip_the_jar(transport, monkeypatch):
    extracted: list[str] = []
    original = http.cookiejar.CookieJar.extract_cookies

    def counting(self: http.cookiejar.CookieJar, response: object, request: object) -> None:
        extracted.append("x")
        original(self, response, request)  # type: ignore[arg-type]

    monkeypatch.setattr(http.cookiejar.CookieJar, "extract_cookies", counting)
    with serve_in_thread(_cookie_vendor()) as url:
        client = build_client("v", Settings(FACADE_UPSTREAM_TRANSPORT=transport), Metrics())
        async with client:
            assert (await client.get(f"{url}/echo")).json() == {"cookie": None}
            assert extracted == []  # no Set-Cookie: the jar was not consulted
            assert (await client.get(f"{url}/login")).status_code == 200
            assert extracted == ["x"]
            assert (await client.get(f"{url}/echo")).json() == {"cookie": "session=s-123"}


async def test_proxy_variables_in_the_environment_are_ignored(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens on port 9 (discard)
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with serve_in_thread(_cookie_vendor()) as url:
        for transport in ("aiohttp", "httpx"):
            client = build_client("v", Settings(FACADE_UPSTREAM_TRANSPORT=transport), Metrics())
            async with client:
                assert (await client.get(f"{url}/echo")).status_code == 200


class _RecordingProxy:
    """A forward proxy stand-in on loopback: records each request line and answers 200 `{}` itself."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.auth: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, headers = head.decode().partition("\r\n")
                self.lines.append(line)
                for header in headers.split("\r\n"):
                    if header.lower().startswith("proxy-authorization:"):
                        self.auth.append(header.split(":", 1)[1].strip())
                body = b'{"proxied": true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> _RecordingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


@pytest.fixture
async def proxy() -> AsyncIterator[_RecordingProxy]:
    async with _RecordingProxy() as p:
        yield p


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_configured_proxy_carries_every_vendor_call(transport, proxy):
    settings = Settings(
        FACADE_UPSTREAM_TRANSPORT=transport, FACADE_UPSTREAM_PROXY=f"http://user:proxy-pw@127.0.0.1:{proxy.port}"
    )
    assert "proxy-pw" in settings.facade_secrets()  # redacted from logs like every other secret
    client = build_client("v", settings, Metrics())
    async with client:
        answer = await client.get("http://vendor.invalid/api/devices?limit=1")
    assert answer.json() == {"proxied": True}
    assert proxy.lines == ["GET http://vendor.invalid/api/devices?limit=1 HTTP/1.1"]
    assert proxy.auth == ["Basic " + base64.b64encode(b"user:proxy-pw").decode()]


async def test_hot_gets_go_through_the_configured_proxy(proxy):
    settings = Settings(FACADE_UPSTREAM_PROXY=f"http://user:proxy-pw@127.0.0.1:{proxy.port}")
    client = build_client("v", settings, Metrics())
    assert client.hot is not None  # the default socket layer, nothing injected: Waltero's GETs take it
    async with client:
        answer = await client.hot.get("http://vendor.invalid/api/devices?limit=1", {"Authorization": "Bearer t"})
    assert answer.status_code == 200
    assert answer.content == b'{"proxied": true}'
    assert proxy.lines == ["GET http://vendor.invalid/api/devices?limit=1 HTTP/1.1"]
    assert proxy.auth == ["Basic " + base64.b64encode(b"user:proxy-pw").decode()]
