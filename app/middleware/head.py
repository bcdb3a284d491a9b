"""`HEAD` wherever `GET` is answered: the request goes on as a `GET`, the headers (`Content-Length`
included) are those of the `GET` (RFC 9110 §9.3.2), and the response ends with the headers. A
streaming answer is stopped there too: the app's next send raises, so nothing runs on for a client
that only asked for headers."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _HeadersSent(Exception):
    pass


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        done = False

        async def send_headers_only(message: Message) -> None:
            nonlocal done
            if done:
                raise _HeadersSent
            if message["type"] == "http.response.start":
                await send(message)
                await send({"type": "http.response.body", "body": b""})
                done = True

        try:
            await self.app({**scope, "method": "GET"}, receive, send_headers_only)
        except _HeadersSent:
            pass
        except Exception:
            if not done:
                raise
