"""`/live-demo`: a tiny page that plots a meter's power from `/readings/live` (sandbox mode only).

Self-contained: inline JS and SVG, no CDN. It reads the stream with `fetch` rather than
`EventSource` so it can send an API key when the sandbox has keys configured (the page itself needs
none), and resumes with `Last-Event-ID` after a drop. Served by a pure-ASGI layer in front of client
auth, so only this one path is open.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.infra.context import Answered, answer_of, request_info

PATH = "/live-demo"

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
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let points = [], lastId = null, controller = null;
function headers() { const k = $("key").value.trim(); return k ? {"X-API-Key": k} : {}; }
function setStatus(s) { $("status").textContent = s; $("status").className = s; }
const STEPS = [60e3, 300e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3, 21600e3, 43200e3, 86400e3];
function timeAxis(t0, t1) {
  // ticks at whole local minutes/hours, at most 8, each a vertical grid line and an HH:MM label
  const g = $("xaxis"); g.replaceChildren();
  const step = STEPS.find(s => (t1 - t0) / s <= 8) || 86400e3;
  const offset = new Date(t0).getTimezoneOffset() * 60e3;
  for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) {
    const x = ((t - t0) / (t1 - t0) * 960).toFixed(1), ns = $("plot").namespaceURI;
    const tick = document.createElementNS(ns, "line");
    for (const [k, v] of [["x1", x], ["x2", x], ["y1", 0], ["y2", 288]]) tick.setAttribute(k, v);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x); label.setAttribute("y", 302); label.setAttribute("stroke", "none");
    label.setAttribute("text-anchor", "middle"); label.setAttribute("class", "tick");
    label.textContent = new Date(t).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hour12: false});
    g.append(tick, label);
  }
}
function draw() {
  if (!points.length) { $("line").setAttribute("points", ""); $("xaxis").replaceChildren(); return; }
  points.sort((a, b) => a[0] - b[0]);
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 60e3);
  let lo = Math.min(...points.map(p => p[1])), hi = Math.max(...points.map(p => p[1]));
  if (hi === lo) { hi += 1; lo -= 1; }
  // x is time (not the point's index), so gaps and uneven instants show as they are
  $("line").setAttribute("points", points.map(([t, v]) =>
    ((t - t0) / (t1 - t0) * 960).toFixed(1) + "," + (280 - (v - lo) / (hi - lo) * 260).toFixed(1)).join(" "));
  $("ymax").textContent = hi.toFixed(0) + " W"; $("ymin").textContent = lo.toFixed(0) + " W";
  timeAxis(t0, t1);
}
function onEvent(type, data, id) {
  if (id) lastId = id;
  if (type === "status") { setStatus(JSON.parse(data).upstream); return; }
  if (type !== "readings") return;
  const ev = JSON.parse(data);
  for (const r of ev.items) if (r.quantity === "power") {
    points.push([Date.parse(r.time), r.value]); $("latest").textContent = r.value + " W at " + r.time;
  }
  if (points.length > 2000) points = points.slice(-2000);
  setStatus("live"); draw();
}
async function stream(meter) {
  if (controller) controller.abort();
  controller = new AbortController();
  const since = new Date(Date.now() - 6 * 3600 * 1000).toISOString().replace(/\\.\\d+Z$/, "Z");
  while (true) {
    const h = headers(); if (lastId) h["Last-Event-ID"] = lastId;
    try {
      const url = "/readings/live?quantity=power&meter_id=" + encodeURIComponent(meter) + "&since=" + since;
      const res = await fetch(url, {headers: h, signal: controller.signal});
      if (!res.ok) { setStatus("error"); $("latest").textContent = res.status + " " + await res.text(); return; }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\\n\\n")) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          let type = "message", data = "", id = null;
          for (const line of block.split("\\n")) {
            if (line.startsWith("event: ")) type = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
            else if (line.startsWith("id: ")) id = line.slice(4);
          }
          if (data) onEvent(type, data, id);
        }
      }
    } catch (e) { if (e.name === "AbortError") return; }
    setStatus("reconnecting"); await new Promise(r => setTimeout(r, 3000));
  }
}
async function loadMeters() {
  const res = await fetch("/meters?backend=iometer&limit=100", {headers: headers()});
  if (!res.ok) { setStatus("error"); $("latest").textContent = "meters: " + res.status; return; }
  const body = await res.json();
  $("meter").innerHTML = "";
  for (const m of body.items) {
    const o = document.createElement("option"); o.value = o.textContent = m.id; $("meter").append(o);
  }
  if (body.items.length && !controller) $("go").click();
}
$("go").onclick = () => { points = []; lastId = null; draw(); stream($("meter").value); };
$("key").onchange = loadMeters;
loadMeters();
</script></body></html>
"""


class LiveDemo:
    """Answers `GET /live-demo` with the page (no key needed); everything else goes on to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._inner = answer_of(app)
        self._body = PAGE.encode()

    def answer(self, scope: Scope) -> Answered | None:
        """The layer below's stored answer; the demo page itself is not a cached answer."""
        if scope["path"] == PATH or self._inner is None:
            return None
        return self._inner.answer(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        request_info(scope).route = PATH
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", b"%d" % len(self._body)),
            (b"cache-control", b"no-cache"),
            (b"content-security-policy", b"default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = self._body if scope["method"] == "GET" else b""
        await send({"type": "http.response.body", "body": body})
