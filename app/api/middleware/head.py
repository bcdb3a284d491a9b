"""`HEAD` wherever `GET` is answered: the request goes on as a `GET`, the headers (`Content-Length`
included) are those of the `GET` (RFC 9110 §9.3.2), and the response ends with the headers. Whatever
body the app then sends is dropped; a streaming answer ends when the client, having its headers,
disconnects."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                await send(message)
                await send({"type": "http.response.body", "body": b""})

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)
