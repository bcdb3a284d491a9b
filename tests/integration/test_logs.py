"""Real uvicorn, started as the README starts it (access log on, `--log-level info`): every line on its
output is one of the service's JSON objects; the access line names the key's label (never the key),
the 422's failing fields (never a query value)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.servers import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
KEY1 = "k1-7c0ffee0c0ffee0c0ffee"
KEY2 = "k2-5ecret5ecret5ecret5e"
MARKER = "zz-query-value-zz"


def test_uvicorn_with_access_log_and_info_writes_only_json_lines(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))} | {
        "FACADE_SANDBOX": "true",
        "FACADE_API_KEYS": f"app1:{KEY1},{KEY2}",
        "FACADE_CHANGES_POLL": "0",
    }
    out = (tmp_path / "out.log").open("w+b")
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--log-level", "info", "--access-log"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        wait_until_up(f"{base}/healthz")
        with httpx.Client(base_url=base) as c:
            assert c.get("/meters", params={"limit": 2}, headers={"X-API-Key": KEY1}).status_code == 200
            assert c.get("/backends", headers={"Authorization": f"Bearer {KEY2}"}).status_code == 200
            refused = c.get("/meters", params={"limit": 5000, "cursor": MARKER}, headers={"X-API-Key": KEY1})
            assert refused.status_code == 422
            quantity = c.get(
                "/readings",
                params={"meter_id": "iometer:x", "start": "2026-05-19T00:00:00Z", "quantity": MARKER},
                headers={"X-API-Key": KEY2},
            )
            assert quantity.status_code == 422
            assert c.get("/meters", params={"secret": MARKER}, headers={"X-API-Key": "wrong"}).status_code == 401
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    out.seek(0)
    text = out.read().decode()
    out.close()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert not line.startswith(("INFO:", "WARNING:", "ERROR:")), line
        parsed = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(parsed), line
    assert MARKER not in text
    assert KEY1 not in text
    assert KEY2 not in text
    assert "wrong" not in text
    records = [json.loads(line) for line in lines]
    access = [r for r in records if r["logger"] == "app.access"]
    by_route = [
        (r["route"], r["status"], r["client"], r.get("invalid_fields")) for r in access if r["route"] != "/healthz"
    ]
    assert by_route == [
        ("/meters", 200, "app1", None),
        ("/backends", 200, "key2", None),
        ("/meters", 422, "app1", ["limit"]),
        ("/readings", 422, "key2", ["quantity"]),
        ("unmatched", 401, None, None),
    ]
    # uvicorn's own lifecycle lines came through as JSON too
    messages = {r["message"] for r in records if r["logger"].startswith("uvicorn")}
    assert "Application startup complete." in messages
    assert "Shutting down" in messages


def test_a_refused_start_is_one_json_line_too() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))}
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(free_port()), "--log-level", "info"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["level"] == "critical"
    assert "FACADE_SANDBOX=true" in record["message"]


def test_with_workers_the_shipped_log_config_keeps_the_supervisor_json_too(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))} | {
        "FACADE_SANDBOX": "true",
        "FACADE_CHANGES_POLL": "0",
    }
    out = (tmp_path / "out.log").open("w+b")
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", "2", "--log-config", "deploy/uvicorn-logging.json"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", timeout=60)
        assert httpx.get(f"http://127.0.0.1:{port}/meters", params={"serial_number": MARKER}).status_code == 200
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    out.seek(0)
    text = out.read().decode()
    out.close()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    messages = [r["message"] for r in records]
    assert any(m.startswith("Started parent process") for m in messages)  # the supervisor's own line
    assert sum(m == "Application startup complete." for m in messages) == 2
    assert MARKER not in text


def test_facade_log_level_governs_uvicorns_lines_too(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))} | {
        "FACADE_SANDBOX": "true",
        "FACADE_CHANGES_POLL": "0",
        "FACADE_LOG_LEVEL": "WARNING",
    }
    out = (tmp_path / "out.log").open("w+b")
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen([*argv, "--log-level", "debug"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz")
        assert httpx.get(f"http://127.0.0.1:{port}/meters").status_code == 200
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    out.seek(0)
    text = out.read().decode()
    out.close()
    assert text.strip() == "", text[:2000]
