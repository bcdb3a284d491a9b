"""`python -m app.doctor` (`make doctor`): a read-only self-check of every pinned vendor assumption.

Reads the same settings as the service (`IOMETER_*`, `WALTERO_*`, from the environment) and asks each
configured vendor, with small read-only requests, whether what docs/vendors/<vendor>.md pins is what it does:

- IOmeter: the partner credentials; the schema by introspection, diffed against the pinned SDL (where
  the server allows introspection); `obisCode(format: decimal)` and the default OBIS form;
  `Pagination {limit, offset}`; the order and uniqueness of the readings listing over several pages
  (by reading time, or by receive time: late uploads); the cursor; id case; unit spellings; the page
  size honoured; the live subscription's protocol (WebSocket or Server-Sent Events), where its auth
  goes, and one event.
- Waltero: the login and its token (a JWT with `exp`); `accessible_organizations`; the device list's
  shape and whether `offset` is honoured; id case; flat or nested telemetry keys; processed against
  raw x multiplier; the v3 daily shape, its value against telemetry register differences, and the bucket
  rule (asked at two `startDate` offsets: 24 h windows or UTC calendar days, against
  `WALTERO_DAILY_BUCKETS`); the data-audit feed's paging; the telemetry wrapper and time key; the
  `date` label of a bucket starting at 22:00Z; where a device's organization comes from; and
  `GET /api/devices/{id}` (shape, multiplier, 404).

Prints a table of PASS / FAIL / UNKNOWN with the evidence; every FAIL names the one place in the code
(or the one setting) to change. Exit status: 0 when nothing FAILed, 1 on any FAIL, 2 when there was
nothing to check. Never prints a secret or a token (evidence holds no payload values beyond ids, counts
and times, and the table is scrubbed of every credential and token seen).

`FACADE_SANDBOX=true` (or `--sandbox`) runs it against the built-in emulators served on loopback
sockets; `--sandbox --break waltero:utc_calendar` serves an emulator variant that breaks one assumption.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Sequence

import httpx

from app.backends import registry as vendors
from app.doctor.report import DoctorContext, Finding, render, unknown
from app.infra.config import Settings
from app.infra.timeutil import Clock

__all__ = ["Finding", "main", "run"]


async def run(
    settings: Settings, *, clock: Clock = time.time, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[list[Finding], list[str]]:
    """Probe every configured vendor of the registry; returns the findings and the secrets to keep out of
    any output (every vendor's secrets, and the tokens the checks obtained)."""
    secrets = [s for name in vendors.names() for s in vendors.vendor_settings(settings, name).secrets() if s]
    findings: list[Finding] = []
    timeout = httpx.Timeout(settings.read_timeout * 2, connect=settings.connect_timeout)
    async with httpx.AsyncClient(timeout=timeout, transport=transport) as http:
        for vendor in vendors.iter_vendors():
            if vendor.doctor is None:
                continue
            if not vendors.vendor_settings(settings, vendor.name).configured():
                findings.append(unknown(vendor.name, "configured", f"{vendor.setup_hint or 'its settings'} not set"))
                continue
            ctx = DoctorContext(settings, http, clock, findings, secrets)
            await _guarded(vendor.name, vendor.doctor(ctx), findings)
    return findings, secrets


async def _guarded(vendor: str, probes: Awaitable[None], findings: list[Finding]) -> None:
    """Run one vendor's probes (which append to `findings` as they go); a vendor that stops answering,
    or answers something the probes cannot read, ends that vendor's checks with an UNKNOWN, never a
    stack trace."""
    try:
        await probes
    except httpx.HTTPError as exc:
        findings.append(unknown(vendor, "reachable", f"the vendor stopped answering ({type(exc).__name__})"))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        findings.append(unknown(vendor, "readable", f"an answer had an unexpected shape ({type(exc).__name__})"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sandbox", action="store_true", help="check the built-in emulators on loopback sockets")
    parser.add_argument(
        "--break",
        dest="breaks",
        action="append",
        default=[],
        metavar="VENDOR:VARIANT",
        help="with --sandbox: serve an emulator variant (e.g. waltero:utc_calendar)",
    )
    args = parser.parse_args(argv)
    settings = Settings()
    if args.sandbox or settings.sandbox:
        from app.doctor.sandbox import loopback_emulators

        try:
            with loopback_emulators(settings, args.breaks) as sandboxed:
                return _report(sandboxed, "the sandbox emulators on loopback")
        except ValueError as exc:
            print(f"doctor: {exc}", file=sys.stderr)
            return 2
    if not vendors.configured_vendors(settings):
        hints = " and/or ".join(v.setup_hint for v in vendors.iter_vendors() if v.setup_hint)
        print(
            f"doctor: no vendor is configured. Set {hints}, or run `FACADE_SANDBOX=true make doctor`.", file=sys.stderr
        )
        return 2
    return _report(settings, "the configured vendors")


def _report(settings: Settings, what: str) -> int:
    findings, secrets = asyncio.run(run(settings))
    print(f"doctor: checking {what}\n")
    print(render(findings, secrets), end="")
    return 1 if any(f.status == "FAIL" for f in findings) else 0
