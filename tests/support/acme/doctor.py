"""Acme's doctor checks: the credentials, and the unit the adapter pins (kWh)."""

from __future__ import annotations

from app.doctor.report import DoctorContext, failed, passed

FIX_UNIT = "tests/support/acme/adapter.py (AcmeBackend.readings: the register's unit)"


async def check(ctx: DoctorContext) -> None:
    from tests.support.acme import settings_of

    settings = settings_of(ctx.settings)
    token = settings.token.get_secret_value() if settings.token else ""
    headers = {"X-Acme-User": settings.user or "", "Authorization": f"Token {token}"}
    response = await ctx.http.get(settings.url.rstrip("/") + "/v1/meters", headers=headers)
    if response.status_code != 200:
        ctx.findings.append(
            failed("acme", "auth", f"GET /v1/meters answered {response.status_code}", "ACME_USER / ACME_TOKEN")
        )
        return
    ctx.findings.append(passed("acme", "auth", "GET /v1/meters answered 200"))
    units = sorted({m.get("unit") for m in response.json()["meters"]})
    if units == ["kWh"]:
        ctx.findings.append(passed("acme", "unit", "every meter's register is in kWh"))
    else:
        ctx.findings.append(failed("acme", "unit", f"meters' units are {units}, the adapter reads kWh", FIX_UNIT))
