"""A bound on the request head (request line and header block): past `FACADE_MAX_HEADER_BYTES`
(default 64 KiB) the answer is `431 Request Header Fields Too Large`, as `application/problem+json`.

Enforced twice, because each place alone leaves a hole:
- in the server loop, by `HeaderLimitedHttpToolsProtocol` (uvicorn's httptools protocol, which has no
  limit of its own; `make run` and the Docker image start uvicorn with `--http
  app.api.middleware.header_limit:HeaderLimitedHttpToolsProtocol`). It counts the bytes of a head while it
  arrives, so a client that never finishes its headers holds at most the limit plus one read, not
  megabytes, and the app never sees an oversized request;
- in the app, by `HeaderLimit` (a pure-ASGI layer), for a server started any other way.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.api.problems import PROBLEM_JSON, problem_body
from app.infra.context import Answered, answer_of

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
STATUS = 431
TITLE = "Request header fields too large"
TYPE = "/problems/request-headers-too-large"


def _detail(limit: int) -> str:
    return f"The request line and headers exceed {limit} bytes; send fewer or shorter headers or a shorter URL."


def problem(limit: int) -> bytes:
    return problem_body(STATUS, TITLE, _detail(limit), type_=TYPE)


def head_bytes(scope: Scope) -> int:
    """The size of a request's head as it came over the wire (request line and header lines)."""
    size = len(scope["method"]) + len(scope.get("raw_path") or scope["path"]) + len(scope["query_string"]) + 12
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
    return size


class HeaderLimit:
    """Answers 431 to a request whose head exceeds `max_bytes`; everything else goes on to `app`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._body = problem(max_bytes)
        self._inner = answer_of(app)

    def too_large(self, scope: Scope) -> bool:
        return head_bytes(scope) > self.max_bytes

    def answer(self, scope: Scope) -> Answered | None:
        """The layer below's stored answer, for a head within the limit."""
        if self._inner is None or self.too_large(scope):
            return None
        return self._inner.answer(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.too_large(scope):
            await self.app(scope, receive, send)
            return
        headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", b"%d" % len(self._body))]
        await send({"type": "http.response.start", "status": STATUS, "headers": headers})
        await send({"type": "http.response.body", "body": self._body})


class HeaderLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request head (`max_head_bytes`, set from
    `FACADE_MAX_HEADER_BYTES` by `app.main`). Past it, the connection gets a 431 and is closed."""

    max_head_bytes = DEFAULT_MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._head_seen = 0
        self._refused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_seen = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        size = len(self.url) + 16 + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
            self._refuse()
            return
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._in_head and not self._refused:
            # The parser keeps an unfinished head; count what it was given since the message began
            # (a read that also held the end of a previous pipelined request is counted whole).
            self._head_seen += len(data)
            if self._head_seen > self.max_head_bytes:
                self._refuse()

    def _refuse(self) -> None:
        self._refused = True
        self._in_head = False
        if self.transport is None or self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # never inside another answer's bytes
            body = problem(self.max_head_bytes)
            head = (
                "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                f"content-type: {PROBLEM_JSON}\r\n"
                f"content-length: {len(body)}\r\n"
                "x-content-type-options: nosniff\r\n"
                "connection: close\r\n\r\n"
            )
            self.transport.write(head.encode() + body)
        self.transport.close()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()
