"""`/live-demo`: a tiny page that plots a meter's power from `/readings/live` (sandbox mode only).

Self-contained: SVG and a script served by the service itself (`/live-demo.js`, from
`app/static/live-demo.js`), no CDN and no inline script: the page's CSP allows scripts from this origin
only and no framing (`frame-ancestors 'none'`). The script reads the stream with `fetch` rather than
`EventSource` so it can send an API key when the sandbox has keys configured (the page itself needs
none), and resumes with `Last-Event-ID` after a drop. Served by a pure-ASGI layer in front of client
auth, so only these two paths are open.
"""

from __future__ import annotations

from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from app.infra.context import Answered, answer_of, request_info

PATH = "/live-demo"
SCRIPT_PATH = "/live-demo.js"
SCRIPT = Path(__file__).resolve().parents[1] / "static" / "live-demo.js"
CSP = (
    b"default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; "
    b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Meter facade: live power</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1.5rem;color:#222}
label{margin-right:1rem}svg{border:1px solid #ccc;background:#fafafa;width:100%;max-width:960px;height:320px}
#status{font-weight:600}.live{color:#2a7}.reconnecting,.overflow,.error{color:#c33}
</style></head><body>
<h1>Live power (sandbox)</h1>
<p><label>Meter <select id="meter"></select></label>
<label>API key (only if the sandbox has keys) <input id="key" type="password" size="24"></label>
<button id="go">Stream</button> <span id="status">idle</span></p>
<p>Replays the last 6 hours, then plots each new instant as the emulator takes it (every 15 minutes of
its clock). Latest: <b id="latest">-</b></p>
<svg id="plot" viewBox="0 0 960 320" preserveAspectRatio="none"><g id="xaxis" font-size="11" fill="#555"
stroke="#ddd"></g><line x1="0" y1="284" x2="960" y2="284" stroke="#999"/><polyline id="line" fill="none"
stroke="#36c" stroke-width="2" points=""/><text id="ymax" x="4" y="14" font-size="12"></text>
<text id="ymin" x="4" y="278" font-size="12"></text><text x="956" y="316" font-size="11"
text-anchor="end" fill="#555">time (local)</text></svg>
<script src="/live-demo.js"></script></body></html>
"""


class LiveDemo:
    """Answers `GET /live-demo` (the page) and `GET /live-demo.js` (its script), no key needed;
    everything else goes on to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._inner = answer_of(app)
        self._files = {
            PATH: (PAGE.encode(), b"text/html; charset=utf-8"),
            SCRIPT_PATH: (SCRIPT.read_bytes(), b"text/javascript; charset=utf-8"),
        }

    def answer(self, scope: Scope) -> Answered | None:
        """The layer below's stored answer; the demo's own files are not cached answers."""
        if scope["path"] in self._files or self._inner is None:
            return None
        return self._inner.answer(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        served = self._files.get(scope["path"]) if scope["type"] == "http" else None
        if served is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        body, media_type = served
        request_info(scope).route = scope["path"]
        headers = [
            (b"content-type", media_type),
            (b"content-length", b"%d" % len(body)),
            (b"cache-control", b"no-cache"),
            (b"content-security-policy", CSP),
            (b"x-frame-options", b"DENY"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
