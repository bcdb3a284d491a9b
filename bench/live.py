"""Live-stream benchmark (`bench/run.py --only live`): 1,000 SSE clients on one facade replica.

Three processes on 127.0.0.1, stopped by PID:
- the IOmeter emulator on an accelerated clock (one 15-minute slot per real second), wrapped so that
  it records the wall-clock moment it hands each `next` message to the server: the *emit* time;
- the facade (one uvicorn worker, live mode, pinned to its own core) pointed at it;
- a client process (pinned to the other core) holding `clients` `/readings/live` streams on the meters
  of one installation (so one upstream subscription), recording when each event arrives.

Reported: RSS per client (facade RSS with every client connected minus with none, per client), the
p50/p99 delay from emit to receive over every delivery, and the facade's CPU time per 1,000 events
delivered (user + system, over the steady window).

    .venv/bin/python bench/run.py --only live
    .venv/bin/python -m bench.live emulator --port N       # (used by the above)
    .venv/bin/python -m bench.live clients --url U --meters a,b --clients N --seconds S
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEED = 900.0
"""Emulator seconds per real second: a new 15-minute reading per meter every real second."""
_EVENT = re.compile(rb'data: \{"meter_id":"iometer:([0-9a-f-]+)","time":"([^"]+)"')


# --- the emulator process --------------------------------------------------------------------------


def run_emulator(port: int) -> None:
    import uvicorn

    from app.backends.iometer.emulator import create_emulator

    real0 = time.time()
    base = real0 - real0 % 900 + 890  # ten emulator seconds before a slot

    def clock() -> float:
        return base + (time.time() - real0) * SPEED

    emulator = create_emulator(clock, subscription_poll=0.002)
    emits: dict[str, float] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/_bench/emits":
            body = json.dumps(emits).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] != "websocket":
            await emulator.app(scope, receive, send)
            return

        async def recording_send(message: Any) -> None:
            text = message.get("text") if message["type"] == "websocket.send" else None
            await send(message)
            if text and '"next"' in text:
                reading = json.loads(text)["payload"]["data"]["liveReadings"]
                emits.setdefault(f"{reading['meter']['id']}|{reading['time']}", time.time())

        await emulator.app(scope, receive, recording_send)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- the client process ----------------------------------------------------------------------------


class _StreamClient(asyncio.Protocol):
    """One SSE client as a bare protocol: the receive time is taken in `data_received`, before any
    parsing, so the load generator's own overhead adds as little as possible to the delay."""

    def __init__(self, request: bytes, samples: list[tuple[str, str, float]], state: dict[str, Any]) -> None:
        self.request = request
        self.samples = samples
        self.state = state
        self.up: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head = True
        self.rest = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        data = self.rest + data
        if self.head:
            if b"\r\n\r\n" not in data:
                self.rest = data
                return
            head, data = data.split(b"\r\n\r\n", 1)
            self.head = False
            if not head.startswith(b"HTTP/1.1 200") and not self.up.done():
                self.up.set_exception(RuntimeError(head.decode(errors="replace")))
                return
            if not self.up.done():
                self.up.set_result(None)
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self.rest = data
            return
        block, self.rest = data[:cut], data[cut + 2 :]
        if self.state["recording"]:
            for m in _EVENT.finditer(block):
                self.samples.append((m.group(1).decode(), m.group(2).decode(), now))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.up.done():
            self.up.set_exception(exc or ConnectionError("closed"))


async def run_clients(url: str, meters: list[str], clients: int, seconds: float, key: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    samples: list[tuple[str, str, float]] = []
    state = {"recording": False}
    loop = asyncio.get_running_loop()
    transports: list[asyncio.BaseTransport] = []
    gate = asyncio.Semaphore(50)

    async def start(i: int) -> None:
        request = (
            f"GET /readings/live?meter_id=iometer:{meters[i % len(meters)]}&quantity=power HTTP/1.1\r\n"
            f"Host: {host}\r\nX-API-Key: {key}\r\n\r\n"
        ).encode()
        async with gate:
            transport, protocol = await loop.create_connection(
                lambda: _StreamClient(request, samples, state), host, int(port)
            )
            transports.append(transport)
            await asyncio.wait_for(protocol.up, 60)

    await asyncio.gather(*(start(i) for i in range(clients)))
    print("ready", len(transports), flush=True)
    state["recording"] = True
    await asyncio.sleep(seconds)
    state["recording"] = False
    print("done", flush=True)
    print(json.dumps({"connected": len(transports), "samples": samples}), flush=True)
    for transport in transports:
        transport.close()


# --- the orchestration -----------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_live(clients: int = 1000, seconds: float = 20.0) -> dict[str, Any]:
    import httpx

    from bench.run import KEY, LOAD_CPU, PY, free_port, pinned, rss_mib, server, uvicorn

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 4 * clients + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # inherited by the processes below

    from app.backends.iometer.emulator import SANDBOX_SETTINGS

    io_port, port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))}
    env.update(SANDBOX_SETTINGS)
    env.update(
        {
            "IOMETER_URL": f"http://127.0.0.1:{io_port}/api/v1/query",
            "IOMETER_AUTH": "basic",  # the emulator's clock runs fast: WSSE `Created` would be out of its window
            "FACADE_API_KEYS": KEY,
            "FACADE_CHANGES_POLL": "0",
            "FACADE_LOG_LEVEL": "WARNING",
            "FACADE_LIVE_MAX_CLIENTS": str(clients),
        }
    )
    emulator_argv = [PY, "-m", "bench.live", "emulator", "--port", str(io_port)]
    with (
        server(emulator_argv, f"http://127.0.0.1:{io_port}/_sandbox/data", cpu=LOAD_CPU),
        server(uvicorn("app.main:app", port), f"http://127.0.0.1:{port}/healthz", env) as pid,
    ):
        base = f"http://127.0.0.1:{port}"
        data = httpx.get(f"http://127.0.0.1:{io_port}/_sandbox/data", timeout=10).json()
        installation = max(data["installations"], key=lambda i: len(i["meter_ids"]))
        meters = list(installation["meter_ids"])
        # warm up: one client opens the installation's subscription and loads every module
        with httpx.stream(
            "GET",
            f"{base}/readings/live",
            params={"meter_id": f"iometer:{meters[0]}"},
            headers={"X-API-Key": KEY},
            timeout=30,
        ) as warm:
            for _ in warm.iter_bytes():
                break
        time.sleep(0.5)
        rss_before = rss_mib(pid)
        runner = subprocess.Popen(
            pinned(
                LOAD_CPU,
                [
                    PY,
                    "-m",
                    "bench.live",
                    "clients",
                    "--url",
                    base,
                    "--meters",
                    ",".join(meters),
                    "--clients",
                    str(clients),
                    "--seconds",
                    str(seconds),
                    "--key",
                    KEY,
                ],
            ),
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert runner.stdout is not None
            line = runner.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(f"clients did not connect: {line!r}")
            cpu0, t0 = _cpu_seconds(pid), time.monotonic()
            time.sleep(1.0)
            rss_after = rss_mib(pid)
            metrics = httpx.get(f"{base}/metrics", timeout=10).text
            line = runner.stdout.readline()
            cpu1, t1 = _cpu_seconds(pid), time.monotonic()
            result = json.loads(runner.stdout.readline())
            runner.wait(timeout=30)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
        emits = httpx.get(f"http://127.0.0.1:{io_port}/_bench/emits", timeout=10).json()
    delays = sorted(
        (received - emits[f"{meter}|{at}"]) * 1000
        for meter, at, received in result["samples"]
        if f"{meter}|{at}" in emits
    )
    deliveries = len(result["samples"])
    per_instant: dict[str, list[float]] = {}
    for meter, at, received in result["samples"]:
        if f"{meter}|{at}" in emits:
            per_instant.setdefault(f"{meter}|{at}", []).append((received - emits[f"{meter}|{at}"]) * 1000)
    firsts = sorted(min(v) for v in per_instant.values())
    spreads = sorted(max(v) - min(v) for v in per_instant.values())

    def pct(p: float) -> float:
        return delays[min(len(delays) - 1, int(p / 100 * len(delays)))] if delays else float("nan")

    def sample(name: str) -> float | None:
        found = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.M)
        return float(found.group(1)) if found else None

    return {
        "clients": result["connected"],
        "seconds": round(t1 - t0, 2),
        "deliveries": deliveries,
        "rss_before_mib": round(rss_before, 1),
        "rss_after_mib": round(rss_after, 1),
        "rss_per_client_kib": round((rss_after - rss_before) * 1024 / max(1, result["connected"]), 1),
        "delay_p50_ms": round(pct(50), 2),
        "delay_p99_ms": round(pct(99), 2),
        "delay_max_ms": round(delays[-1], 2) if delays else None,
        "first_client_delay_median_ms": round(firsts[len(firsts) // 2], 2) if firsts else None,
        "fan_out_spread_median_ms": round(spreads[len(spreads) // 2], 2) if spreads else None,
        "cpu_ms_per_1000_events": round((cpu1 - cpu0) * 1000 / max(1, deliveries) * 1000, 2),
        "facade_live_clients": sample("facade_live_clients"),
        "upstream_streams": sample('facade_live_upstream_streams{backend="iometer"}'),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    emu = sub.add_parser("emulator")
    emu.add_argument("--port", type=int, required=True)
    cli = sub.add_parser("clients")
    cli.add_argument("--url", required=True)
    cli.add_argument("--meters", required=True)
    cli.add_argument("--clients", type=int, default=1000)
    cli.add_argument("--seconds", type=float, default=20.0)
    cli.add_argument("--key", required=True)
    args = parser.parse_args()
    if args.command == "emulator":
        run_emulator(args.port)
    else:
        asyncio.run(run_clients(args.url, args.meters.split(","), args.clients, args.seconds, args.key))


if __name__ == "__main__":
    main()
