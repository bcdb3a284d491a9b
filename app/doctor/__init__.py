"""`python -m app.doctor` (`make doctor`): a read-only self-check of every pinned vendor assumption.

Reads the same settings as the service (`IOMETER_*`, `WALTERO_*`, from the environment) and asks each
configured vendor, with small read-only requests, whether what UPSTREAMS.md pins is what it does:

- IOmeter: the partner credentials; the schema by introspection, diffed against the pinned SDL (where
  the server allows introspection); `obisCode(format: decimal)` and the default OBIS form;
  `Pagination {limit, offset}`; the order and uniqueness of a real readings page; the cursor; id case.
- Waltero: the login and its token (a JWT with `exp`); `accessible_organizations`; the device list's
  shape and whether `offset` is honoured; id case; flat or nested telemetry keys; processed against
  raw x multiplier; the v3 daily shape, its value against telemetry register differences, and the bucket
  rule (asked at two `startDate` offsets: 24 h windows or UTC calendar days, against
  `WALTERO_DAILY_BUCKETS`); the data-audit feed's paging.

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

from app.backends.iometer import doctor as iometer
from app.backends.iometer import settings_of as io_settings
from app.backends.waltero import doctor as waltero
from app.backends.waltero import settings_of as wa_settings
from app.doctor.report import Finding, render, unknown
from app.infra.config import Settings
from app.infra.timeutil import Clock

__all__ = ["Finding", "main", "run"]


async def run(
    settings: Settings, *, clock: Clock = time.time, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[list[Finding], list[str]]:
    """Probe every configured vendor; returns the findings and the secrets to keep out of any output."""
    secrets = [s for s in (_secret(io_settings(settings).partner_secret), _secret(wa_settings(settings).password)) if s]
    findings: list[Finding] = []
    timeout = httpx.Timeout(settings.read_timeout * 2, connect=settings.connect_timeout)
    async with httpx.AsyncClient(timeout=timeout, transport=transport) as http:
        if io_settings(settings).configured():
            await _guarded("iometer", iometer.check(settings, http, clock, findings), findings)
        else:
            findings.append(unknown("iometer", "configured", "IOMETER_PARTNER_ID / IOMETER_PARTNER_SECRET not set"))
        if wa_settings(settings).configured():
            await _guarded("waltero", waltero.check(settings, http, clock, findings, secrets), findings)
        else:
            findings.append(unknown("waltero", "configured", "WALTERO_USERNAME / WALTERO_PASSWORD not set"))
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


def _secret(value: object) -> str:
    getter = getattr(value, "get_secret_value", None)
    return str(getter()) if getter else ""


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
    if not (io_settings(settings).configured() or wa_settings(settings).configured()):
        print(
            "doctor: no vendor is configured. Set IOMETER_PARTNER_ID and IOMETER_PARTNER_SECRET and/or "
            "WALTERO_USERNAME and WALTERO_PASSWORD, or run `FACADE_SANDBOX=true make doctor`.",
            file=sys.stderr,
        )
        return 2
    return _report(settings, "the configured vendors")


def _report(settings: Settings, what: str) -> int:
    findings, secrets = asyncio.run(run(settings))
    print(f"doctor: checking {what}\n")
    print(render(findings, secrets), end="")
    return 1 if any(f.status == "FAIL" for f in findings) else 0
