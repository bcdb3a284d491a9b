"""Redaction by derivation: a vendor that echoes the request's `Authorization` header in its 401 error
text makes the doctor (and would make a log line) print a decodable credential unless everything
derived from a secret is blanked, not only the secret itself. The doctor runs as `make doctor` does,
against a loopback vendor that echoes."""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import re
import subprocess
import sys
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.infra.logs import configure_logging
from tests.support.servers import serve_in_thread

PARTNER, SECRET = "partner-0042", "s3cr3t-partner-value-9"


def echoing_vendor(seen: list[str]) -> Starlette:
    """An IOmeter-like endpoint that refuses every request, quoting the `Authorization` it got."""

    async def query(request: Request) -> JSONResponse:
        header = request.headers.get("authorization", "")
        seen.append(header)
        error = {"message": f"rejected: {header}", "extensions": {"code": "UNAUTHENTICATED"}}
        return JSONResponse({"errors": [error]}, status_code=401)

    return Starlette(routes=[Route("/api/v1/query", query, methods=["POST"])])


def decodable_secrets(text: str) -> list[str]:
    """Every base64 run in `text` that decodes (at any alignment) to something holding the secret."""
    found = []
    for run in re.findall(r"[A-Za-z0-9+/_-]{8,}={0,2}", text):
        for skip in range(4):
            chunk = run[skip:].rstrip("=")
            chunk = chunk[: len(chunk) - len(chunk) % 4] if len(chunk) % 4 == 1 else chunk
            for alphabet in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    decoded = alphabet(chunk + "=" * (-len(chunk) % 4))
                except (binascii.Error, ValueError):
                    continue
                if SECRET.encode()[:8] in decoded:
                    found.append(run)
    return found


def run_doctor(url: str, auth: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IOMETER_", "WALTERO_", "FACADE_"))}
    env = {
        **clean,
        "IOMETER_URL": url + "/api/v1/query",
        "IOMETER_PARTNER_ID": PARTNER,
        "IOMETER_PARTNER_SECRET": SECRET,
        "IOMETER_AUTH": auth,
    }
    done = subprocess.run([sys.executable, "-m", "app.doctor"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr  # the auth check FAILs
    return done.stdout + done.stderr


@pytest.mark.parametrize("auth", ["basic", "wsse"])
def test_the_doctor_prints_nothing_derived_from_the_secret(auth: str) -> None:
    seen: list[str] = []
    with serve_in_thread(echoing_vendor(seen)) as url:
        output = run_doctor(url, auth)
    assert seen, "the doctor never reached the vendor"
    assert re.search(r"iometer\s+auth\s+FAIL\s+.*HTTP 401 UNAUTHENTICATED", output), output
    assert "rejected: " in output  # the vendor's words are kept, its copy of our credentials is not
    assert SECRET not in output
    assert not decodable_secrets(output), output
    for header in seen:
        credential = header.removeprefix("Basic ")
        assert credential not in output, output
        digest = re.search(r'PasswordDigest="([^"]+)"', header)
        if digest:
            assert digest.group(1) not in output, output
    basic = base64.b64encode(f"{PARTNER}:{SECRET}".encode()).decode()
    assert basic[12:24] not in output


def test_a_log_line_quoting_a_credential_is_blanked_too() -> None:
    stream = io.StringIO()
    configure_logging("INFO", [SECRET], stream=stream)
    try:
        basic = base64.b64encode(f"{PARTNER}:{SECRET}".encode()).decode()
        jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
        log = logging.getLogger("app.test")
        log.warning("vendor said: Basic %s rejected", basic)
        log.warning("vendor said: %s", base64.urlsafe_b64encode(f"x{PARTNER}:{SECRET}".encode()).decode())
        log.warning('vendor said: PasswordDigest="q1w2e3r4t5y6u7i8o9p0AbCd==", Nonce="00ff00ff00ff00ff"')
        log.warning("vendor said: Authorization: Bearer %s", jwt)
        log.warning("basic authentication is configured")
        logging.getLogger().handlers[-1].flush()
        for _ in range(100):  # the writer thread flushes within a few ms
            if stream.getvalue().count("\n") >= 5:
                break
            time.sleep(0.02)
        text = stream.getvalue()
    finally:
        configure_logging("INFO", [])
    assert text.count("vendor said") == 4
    assert SECRET not in text and not decodable_secrets(text), text
    assert "q1w2e3r4t5y6u7i8o9p0AbCd" not in text and jwt not in text and "eyJ" not in text
    assert "basic authentication is configured" in text  # prose stays
