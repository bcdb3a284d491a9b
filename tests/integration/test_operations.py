"""Operations: no secret in any log line or response of a full run; graceful shutdown."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx

from app.factory import create_app
from app.infra.config import Settings
from app.infra.logs import configure_logging
from app.sandbox import create_emulators, sandbox_settings
from tests.support.apps import running
from tests.support.clock import FakeClock
from tests.support.servers import PYTHON, free_port, serve_process

KEY = "ops-api-key-0123456789abcdef"


async def test_no_secret_or_token_in_any_log_line_or_response() -> None:
    stream = io.StringIO()
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    emulators = create_emulators(clock)
    waltero = emulators["waltero"]
    issued: list[str] = []
    original_issue = waltero._issue

    def recording_issue(use: str, ttl: float) -> str:
        token = original_issue(use, ttl)
        issued.append(token)
        return token

    waltero._issue = recording_issue  # type: ignore[method-assign]
    waltero.token_ttl = 60  # several renewals during the run
    settings = Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0, FACADE_API_KEYS=KEY, FACADE_LOG_LEVEL="DEBUG")
    full = sandbox_settings(settings)
    secrets = [
        KEY,
        *full.vendor_settings("iometer").secrets(),
        *full.vendor_settings("waltero").secrets(),
    ]
    # Log everything, DEBUG included, and without the formatter's safety net: redaction must be at the source.
    configure_logging("DEBUG", secrets=[], stream=stream)
    for noisy in ("httpx", "httpcore", "gql"):
        logging.getLogger(noisy).setLevel(logging.DEBUG)
    bodies: list[str] = []
    try:
        app = create_app(settings, clock=clock, sleep=clock.sleep, emulators=emulators)
        async with running(app, key=KEY) as c:
            now = datetime.fromtimestamp(clock.now, UTC)
            start = f"{now - timedelta(hours=2):%Y-%m-%dT%H:%M:%SZ}"
            meters = (await c.get("/meters?limit=1000")).json()["items"]
            for meter in meters[:8]:
                bodies.append((await c.get(f"/readings?meter_id={meter['id']}&start={start}")).text)
                if meter["device_id"]:
                    bodies.append((await c.get(f"/devices/{meter['device_id']}/status")).text)
                clock.advance(30)  # tokens expire and are renewed along the way
            day = now.date()
            bodies.append((await c.get(f"/consumption/daily?start={day - timedelta(days=2)}&end={day}")).text)
            bodies.append((await c.get(f"/changes?since={start}")).text)
            bodies.append((await c.get("/backends")).text)
            bodies.append((await c.get("/metrics")).text)
            bodies.append((await c.get("/meters", headers={"X-API-Key": "wrong"})).text)
            waltero.revoke_tokens()  # the vendor rejects our token: one re-login
            bodies.append((await c.get(f"/devices/{meters[-1]['device_id']}/status")).text)
            waltero.faults.fail_next = [401, 401, 401]  # and then keeps rejecting us
            clock.advance(40)
            bodies.append((await c.get(f"/devices/{meters[-2]['device_id']}/status")).text)
            emulators["iometer"].faults.fail_next = [401]
            bodies.append((await c.get(f"/meters/{meters[0]['id']}?x=1")).text)
    finally:
        configure_logging("WARNING", stream=io.StringIO())
        for noisy in ("httpx", "httpcore", "gql"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    logs = stream.getvalue()
    assert len(issued) >= 3, "the run should have renewed the Waltero token"
    assert "upstream call" in logs
    assert "app.access" in logs
    everything = logs + "\n".join(bodies)
    for secret in secrets + issued:
        assert secret not in everything, "a credential or token leaked"
    for line in logs.splitlines():
        json.loads(line)  # every line is JSON


def test_graceful_shutdown_finishes_in_flight_requests() -> None:
    wa_port, port = free_port(), free_port()
    with serve_process(
        [PYTHON, "-m", "app.backends.waltero.emulator", "--port", str(wa_port)],
        f"http://127.0.0.1:{wa_port}/_sandbox/stats",
    ):
        from app.backends.waltero import emulator as waltero

        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))},
            **waltero.SANDBOX_SETTINGS,
            "WALTERO_URL": f"http://127.0.0.1:{wa_port}",
            "FACADE_ALLOW_ANONYMOUS": "true",
            "FACADE_CHANGES_POLL": "0",
        }
        facade = subprocess.Popen(
            [PYTHON, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "facade did not start"
                    assert facade.poll() is None, "facade did not start"
                    time.sleep(0.05)
            device = httpx.get(f"{base}/meters", timeout=10).json()["items"][0]["device_id"]
            # every vendor call now takes up to 1.5 s
            httpx.put(f"http://127.0.0.1:{wa_port}/_sandbox/faults", json={"latency": 1.5}, timeout=5)
            result: dict[str, object] = {}

            def slow_request() -> None:
                try:
                    result["response"] = httpx.get(f"{base}/devices/{device}/status", timeout=30)
                except httpx.HTTPError as exc:
                    result["error"] = exc

            worker = threading.Thread(target=slow_request)
            worker.start()
            time.sleep(0.3)  # the request is in flight
            os.kill(facade.pid, signal.SIGTERM)
            worker.join(timeout=30)
            response = result.get("response")
            assert isinstance(response, httpx.Response), result
            assert response.status_code == 200
            # uvicorn re-raises SIGTERM once it has shut down cleanly, so the process ends by the signal
            assert facade.wait(timeout=20) in (0, -signal.SIGTERM)
            output = facade.stdout.read().decode() if facade.stdout else ""
            assert "Application shutdown complete" in output
            assert "Traceback" not in output
        finally:
            if facade.poll() is None:
                facade.kill()
                facade.wait()
            if facade.stdout:
                facade.stdout.close()


async def test_the_request_id_is_forwarded_to_the_vendor() -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    emulators = create_emulators(clock)
    seen: list[tuple[str, str | None]] = []

    def recording(app):  # type: ignore[no-untyped-def]
        async def wrapper(scope, receive, send):  # type: ignore[no-untyped-def]
            if scope["type"] == "http":
                headers = dict(scope["headers"])
                rid = headers.get(b"x-request-id")
                seen.append((scope["path"], rid.decode() if rid else None))
            await app(scope, receive, send)

        return wrapper

    transports = {name: httpx.ASGITransport(app=recording(e.app)) for name, e in emulators.items()}
    app = create_app(
        Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0), clock=clock, emulators=emulators, transports=transports
    )
    async with running(app, key=None) as c:
        r = await c.get("/meters", headers={"X-Request-ID": "trace-42"})
        assert r.status_code == 200
        assert r.headers["x-request-id"] == "trace-42"
    vendor_calls = [rid for path, rid in seen if not path.startswith("/_sandbox")]
    assert vendor_calls
    assert set(vendor_calls) == {"trace-42"}


async def test_readyz_is_503_while_a_vendor_rejects_our_credentials() -> None:
    from app.infra.errors import UpstreamAuthFailed
    from tests.support.apps import fake_app
    from tests.support.fake_backend import FakeBackend

    io, wa = FakeBackend("iometer"), FakeBackend("waltero")
    app = fake_app({"iometer": io, "waltero": wa})
    async with running(app) as c:
        assert (await c.get("/readyz")).status_code == 200
        app.runtime.readiness.clear()
        wa.fail = UpstreamAuthFailed("Waltero rejected the login", backend="waltero")
        r = await c.get("/readyz")
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert "waltero" in r.json()["detail"]
        assert r.headers["retry-after"]
