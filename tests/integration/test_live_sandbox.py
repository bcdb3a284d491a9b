"""`make run`'s configuration (`FACADE_SANDBOX=true`) in a real uvicorn process on a loopback port,
stopped by its PID: the live stream works end to end against the in-process emulators, and the
`/live-demo` page is served without a key and without any external asset."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import UTC, datetime, timedelta

import httpx

from tests.support.live import parse_events
from tests.support.servers import PYTHON, free_port, serve_process

KEY = "sandbox-live-key-0123"


def test_the_sandbox_streams_live_readings_and_serves_the_demo_page() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [PYTHON, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    env = {"FACADE_SANDBOX": "true", "FACADE_API_KEYS": KEY, "FACADE_LIVE_PING": "0.3", "FACADE_CHANGES_POLL": "0"}
    with serve_process(argv, f"{base}/healthz", env=env), httpx.Client(base_url=base, timeout=30) as http:
        page = http.get("/live-demo")  # no key
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "<svg" in html
        assert '<script src="/live-demo.js"></script>' in html and "<script>" not in html
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        script = http.get("/live-demo.js")  # no key either
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert "/readings/live" in script.text
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # no CDN, no external asset
        assert "http://" not in html
        assert "https://" not in html
        assert http.get("/readings/live", params={"meter_id": "iometer:x"}).status_code == 401

        keyed = {"X-API-Key": KEY}
        meter = http.get("/meters", params={"backend": "iometer"}, headers=keyed).json()["items"][0]["id"]
        since = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        params = {"meter_id": meter, "since": since, "quantity": "power"}
        text = ""
        with http.stream("GET", "/readings/live", params=params, headers=keyed) as stream:
            assert stream.status_code == 200
            for chunk in stream.iter_text():
                text += chunk
                if text.count(": ping") >= 2:
                    # while the stream is open: leaving the loop closes the response's iterator, and
                    # with it the connection
                    metrics = http.get("/metrics").text
                    break
        events, pings, _ = parse_events(text)
        times = [e.data["time"] for e in events if e.event == "readings"]
        assert 7 <= len(times) <= 9  # every 15-minute instant of the last two hours, once, in order
        assert times == sorted(set(times))
        assert all(t > since and t[14:16] in ("00", "15", "30", "45") for t in times)
        assert {i["quantity"] for e in events for i in e.data["items"]} == {"power"}
        assert {i["unit"] for e in events for i in e.data["items"]} == {"W"}
        assert pings >= 2
        assert re.search(r"^facade_live_clients 1\.0$", metrics, re.M)
        assert re.search(r'^facade_live_upstream_streams\{backend="iometer"\} 1\.0$', metrics, re.M)


def test_sigterm_ends_open_streams_cleanly_and_the_server_stops_at_once() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [PYTHON, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    env = {"FACADE_SANDBOX": "true", "FACADE_CHANGES_POLL": "0"}
    with serve_process(argv, f"{base}/healthz", env=env) as proc, httpx.Client(base_url=base, timeout=30) as http:
        meter = http.get("/meters", params={"backend": "waltero"}).json()["items"][0]["id"]
        with http.stream("GET", "/readings/live", params={"meter_id": meter}) as stream:
            chunks = stream.iter_bytes()
            assert next(chunks).startswith(b"retry:")
            os.kill(proc.pid, signal.SIGTERM)
            started = time.monotonic()
            rest = b"".join(chunks)  # the response ends (a clean chunked end, no error)
        assert b"event: status" not in rest
        proc.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught
