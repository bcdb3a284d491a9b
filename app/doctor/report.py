"""The doctor's findings and their table. A finding never holds a secret: evidence is built from
counts, field names, times and ids, and `render` blanks every secret it was given, and everything
derived from one, anyway (`app.infra.redaction`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from app.infra.redaction import Redactor

Status = Literal["PASS", "FAIL", "UNKNOWN"]


@dataclass(frozen=True, slots=True)
class Finding:
    vendor: str
    check: str
    """A short code-defined name (`daily_buckets`, `cursor`, ...)."""
    status: Status
    evidence: str
    fix: str | None = None
    """For a FAIL: the one place in the code (or the one setting) to change."""


@dataclass(frozen=True, slots=True)
class DoctorContext:
    """What a vendor's checks get: the service's settings (the vendor's own through its `settings_of`),
    an HTTP client, the clock, the list to append findings to, and the list of secrets seen (tokens the
    checks obtain are added, so the report blanks them)."""

    settings: Any
    http: httpx.AsyncClient
    clock: Callable[[], float]
    findings: list[Finding]
    secrets: list[str]


def passed(vendor: str, check: str, evidence: str) -> Finding:
    return Finding(vendor, check, "PASS", evidence)


def failed(vendor: str, check: str, evidence: str, fix: str) -> Finding:
    return Finding(vendor, check, "FAIL", evidence, fix)


def unknown(vendor: str, check: str, evidence: str) -> Finding:
    return Finding(vendor, check, "UNKNOWN", evidence)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` without `secrets`, anything derived from them (their base64 inside Basic credentials,
    their percent-encoding) or shaped like a credential (Basic/Bearer values, WSSE digests, JWTs):
    a vendor may echo the request's `Authorization` header in its error text."""
    return Redactor(secrets)(text)


def render(findings: list[Finding], secrets: Iterable[str] = ()) -> str:
    """A fixed-width table: vendor, check, status, evidence (and `fix:` on the line below a FAIL)."""
    hidden = list(secrets)
    rows = [("VENDOR", "CHECK", "STATUS", "EVIDENCE")]
    rows += [(f.vendor, f.check, f.status, f.evidence) for f in findings]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
        if index and findings[index - 1].fix:
            lines.append(" " * (sum(widths) + 6) + "fix: " + (findings[index - 1].fix or ""))
    counts = {status: sum(1 for f in findings if f.status == status) for status in ("PASS", "FAIL", "UNKNOWN")}
    lines.append("")
    lines.append(f"{counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['UNKNOWN']} UNKNOWN")
    return redact("\n".join(lines), hidden) + "\n"
