"""NDJSON export of a long window, measured on real processes: rows/s and the facade's RSS.

Starts on 127.0.0.1 the IOmeter emulator with a year and more of history and the facade (one uvicorn
worker, live mode, pointed at the emulator), then streams `GET /readings` with
`Accept: application/x-ndjson` over `days` days of one meter's 15-minute readings while a thread samples
the facade's RSS every 20 ms. Used by `make bench` (`bench/run.py --ndjson`) and by the test that holds
the stream to a steady RSS (`tests/integration/test_exports_over_loopback.py`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
sys.path.insert(0, str(ROOT))

from bench.run import free_port, server  # noqa: E402

KEY = "export-bench-key-0123456789abcdef"

_EMULATOR = r"""
import sys
import uvicorn
from app.backends.iometer.emulator import create_emulator
emulator = create_emulator(window_days=int(sys.argv[2]))
uvicorn.run(emulator.app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of `pid`, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def _env(io_port: int) -> dict[str, str]:
    from app.backends.iometer import emulator as iometer

    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))}
    env.update(iometer.SANDBOX_SETTINGS)
    env.update(
        {
            "IOMETER_URL": f"http://127.0.0.1:{io_port}/api/v1/query",
            "FACADE_API_KEYS": KEY,
            "FACADE_CHANGES_POLL": "0",
            "FACADE_REQUEST_DEADLINE": "60",
            "FACADE_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


class _Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.peak = max(self.peak, _status(self.pid)["VmRSS"])
            self.stop.wait(0.02)


def _z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def measure(days: int = 366, quantity: str | None = "energy_import") -> dict[str, Any]:
    """Stream `days` days of one IOmeter meter's readings as NDJSON; rows/s and the facade's RSS (MiB).

    `quantity` None streams every register (about five per 15-minute reading)."""
    io_port, port = free_port(), free_port()
    env = _env(io_port)
    base = f"http://127.0.0.1:{port}"
    with (
        server(
            [PY, "-c", _EMULATOR, str(io_port), str(days + 5)],
            f"http://127.0.0.1:{io_port}/_sandbox/stats",
            env,
            cpu=None,
            startup=60,
        ),
        server(
            [PY, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            f"{base}/healthz",
            env,
            cpu=None,
            startup=60,
        ) as pid,
        httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=120) as client,
    ):
        meter = client.get("/meters", params={"backend": "iometer"}).json()["items"][0]["id"]
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(days=days)
        params: dict[str, str] = {"meter_id": meter, "start": _z(start), "end": _z(end)}
        if quantity:
            params["quantity"] = quantity
        # warm up: the same code path over one day, so imports and pools are not counted as growth
        warm = {**params, "start": _z(end - timedelta(days=1))}
        with client.stream("GET", "/readings", params=warm, headers={"Accept": "application/x-ndjson"}) as r:
            r.raise_for_status()
            for _ in r.iter_lines():
                pass
        before = _status(pid)
        sampler = _Sampler(pid)
        sampler.start()
        rows = size = 0
        first = last = None
        t0 = time.perf_counter()
        try:
            with client.stream("GET", "/readings", params=params, headers={"Accept": "application/x-ndjson"}) as r:
                r.raise_for_status()
                content_type = r.headers["content-type"]
                for line in r.iter_lines():
                    if not line:
                        continue
                    size += len(line) + 1
                    item = json.loads(line)
                    if "error" in item:
                        raise RuntimeError(f"the stream failed: {item['error']}")
                    first = first or item["time"]
                    last = item["time"]
                    rows += 1
        finally:
            seconds = time.perf_counter() - t0
            sampler.stop.set()
            sampler.join()
        after = _status(pid)
    peak = max(sampler.peak, after["VmRSS"])
    return {
        "days": days,
        "rows": rows,
        "bytes": size,
        "first": first,
        "last": last,
        "content_type": content_type,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds) if seconds else 0,
        "rss_before_mib": round(before["VmRSS"], 1),
        "rss_peak_mib": round(peak, 1),
        "rss_growth_mib": round(peak - before["VmRSS"], 1),
        "hwm_mib": round(after["VmHWM"], 1),
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 366), indent=2))
