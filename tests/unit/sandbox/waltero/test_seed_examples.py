"""The seed page's own shell examples, run with the real `curl` and `jq` against the emulator on a
loopback socket. The commands are the page's, verbatim apart from the base URL and credentials: each
script below is asserted to appear byte for byte in the page (`tests/unit/sandbox/seeds/
waltero-metering-api.txt`, a copy of the page the project pins). The answers are checked against the
page's own field tables and jq filters.

`curl` and `jq` are required, never skipped: `make test` installs them (scripts/ensure-system-packages.sh);
without them these tests fail saying what to install."""

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.backends.waltero.emulator import ORG_NORTH, SANDBOX_SETTINGS, Emulator, create_emulator
from tests.support.clock import FakeClock
from tests.support.servers import serve_in_thread
from tests.support.tools import require_tool

PAGE = (Path(__file__).parent.parent / "seeds" / "waltero-metering-api.txt").read_text(encoding="utf-8")

LOGIN = """TOKEN=$(curl -s -X POST "$BASE/api/auth/login" \\
-H 'Content-Type: application/json' \\
-d '{"username":"'"$USERNAME"'","password":"'"$PASSWORD"'"}' | jq -r .token)
"""
PAGE_LOGIN = """TOKEN=$(curl -s -X POST "$BASE/api/auth/login" \\
-H 'Content-Type: application/json' \\
-d '{"username":"you@example.com","password":"…"}' | jq -r .token)"""
"""The page's login, whose credentials `LOGIN` takes from the environment instead."""


def test_curl_and_jq_are_installed() -> None:
    missing = [tool for tool in ("curl", "jq", "bash") if shutil.which(tool) is None]
    assert not missing, f"install {' and '.join(missing)} (apt-get install {' '.join(missing)}; `make test` does)"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Emulator]]:
    require_tool("curl")
    require_tool("jq")
    # The page's examples ask for 2026-05-18..25: put "now" just after them.
    emulator = create_emulator(FakeClock(datetime(2026, 5, 26, 9, 30, tzinfo=UTC)))
    with serve_in_thread(emulator.app) as url:
        yield url + "/prod", emulator


def run(served: tuple[str, Emulator], script: str) -> str:
    missing = [tool for tool in ("curl", "jq") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"these tests run the page's curl | jq examples: install {' and '.join(missing)}")
    base, _ = served
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BASE": base,
        "USERNAME": SANDBOX_SETTINGS["WALTERO_USERNAME"],
        "PASSWORD": SANDBOX_SETTINGS["WALTERO_PASSWORD"],
        "NO_PROXY": "*",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", LOGIN + script], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_login_gives_a_token(served: tuple[str, Emulator]) -> None:
    token = run(served, 'echo "$TOKEN"').strip()
    assert token.count(".") == 2
    assert token != "null"


def test_find_your_organization(served: tuple[str, Emulator]) -> None:
    out = run(
        served,
        """curl -s "$BASE/api/auth/me" \\
-H "Authorization: Bearer $TOKEN" | jq '{
primary_org: .user.organizations[0].organization_id,
all_accessible: .accessible_organizations
}'""",
    )
    body = json.loads(out)
    assert body["primary_org"] == ORG_NORTH
    assert [o["organization_id"] for o in body["all_accessible"]] == [ORG_NORTH, "00000000-0000-0000-0000-000000000002"]


def test_fetch_daily_consumption(served: tuple[str, Emulator]) -> None:
    out = run(
        served,
        """ORG='00000000-0000-0000-0000-000000000001'
START='2026-05-18T22:00:00.000Z'
END='2026-05-25T22:00:00.000Z'
curl -s "$BASE/api/organizations/$ORG/applications/metering/v3/data/device-daily-consumption\\
?startDate=$START\\
&endDate=$END\\
&resolution=day" \\
-H "Authorization: Bearer $TOKEN" | jq""",
    )
    rows = json.loads(out)["data"]
    _, emulator = served
    assert len(rows) == 12 * 7
    kitchen = [r for r in rows if r["deviceId"] == "11111111-1111-1111-1111-111111111101"]
    assert [r["date"] for r in kitchen] == [f"2026-05-{d}" for d in range(18, 25)]
    assert all(set(r) == {"deviceId", "deviceName", "serialNumber", "consumption"} for r in rows if "date" not in r)
    assert any("date" not in r for r in rows)  # the silent meter's null rows
    expected = emulator.daily_buckets(
        ORG_NORTH, datetime(2026, 5, 18, 22, tzinfo=UTC), datetime(2026, 5, 25, 22, tzinfo=UTC)
    )
    assert rows == [r.to_wire() for r in expected]


def test_find_devices(served: tuple[str, Emulator]) -> None:
    out = run(
        served,
        """ORG='00000000-0000-0000-0000-000000000001'
curl -s "$BASE/api/organizations/$ORG/devices?limit=100" \\
-H "Authorization: Bearer $TOKEN" | jq '.data[] | {id, name, meter_type}'""",
    )
    devices = [json.loads(line) for line in out.replace("}\n{", "}\x00{").split("\x00")]
    assert len(devices) == 12
    assert devices[0] == {
        "id": "11111111-1111-1111-1111-111111111101",
        "name": "Kitchen cold water",
        "meter_type": "water_cold",
    }


def test_fetch_raw_telemetry_and_fields(served: tuple[str, Emulator]) -> None:
    out = run(
        served,
        """START='2026-05-18T22:00:00.000Z'
END='2026-05-25T22:00:00.000Z'
DEVICE='11111111-1111-1111-1111-111111111101'
curl -s "$BASE/api/devices/$DEVICE/telemetry\\
?startDate=$START\\
&endDate=$END\\
&fields=meter.value.processed,meter.value.raw,battery.voltage,connection.rssi" \\
-H "Authorization: Bearer $TOKEN" | jq
curl -s "$BASE/api/devices/$DEVICE/fields" \\
-H "Authorization: Bearer $TOKEN" | jq""",
    )
    decoder = json.JSONDecoder()
    telemetry, end = decoder.raw_decode(out)
    fields, _ = decoder.raw_decode(out[end:].lstrip())
    assert telemetry["deviceId"] == "11111111-1111-1111-1111-111111111101"
    assert len(telemetry["data"]) == 7 * 24
    assert set().union(*telemetry["data"]) == {
        "timestamp",
        "meter.value.processed",
        "meter.value.raw",
        "battery.voltage",
        "connection.rssi",
    }
    assert set(fields) == {"meter", "battery", "connection", "meta"}


def test_data_audit_changelog(served: tuple[str, Emulator]) -> None:
    out = run(
        served,
        """ORG='00000000-0000-0000-0000-000000000001'
curl -s "$BASE/api/organizations/$ORG/data-audit/changes\\
?since=2026-05-25T00:00:00.000Z\\
&limit=200" \\
-H "Authorization: Bearer $TOKEN" | jq""",
    )
    body = json.loads(out)
    assert body["next_cursor"] is None
    assert len(body["data"]) >= 2
    assert all(row["changed_at"] >= "2026-05-25T00:00:00.000Z" for row in body["data"])
    assert set(body["data"][0]) == {
        "id",
        "device_id",
        "timestamp",
        "previous_value",
        "new_value",
        "actor",
        "changed_at",
    }


def _scripts_in_this_module() -> list[str]:
    """The shell scripts the tests above hand to `run` (the triple-quoted strings after `served,`)."""
    import re

    source = Path(__file__).read_text(encoding="utf-8")
    return [
        bytes(text, "utf-8").decode("unicode_escape")
        for text in re.findall(r'run\(\n\s+served,\n\s+"""(.*?)""",\n\s+\)', source, flags=re.S)
    ]


def test_the_scripts_are_the_pages_byte_for_byte() -> None:
    scripts = _scripts_in_this_module()
    assert len(scripts) == 5
    page_lines = set(PAGE.splitlines())
    assert PAGE_LOGIN in PAGE
    # the same command, the credentials spliced in from the environment instead of the page's placeholders
    spliced = LOGIN.replace("'\"$USERNAME\"'", "you@example.com").replace("'\"$PASSWORD\"'", "…")
    assert spliced.strip() == PAGE_LOGIN
    for script in scripts:
        for line in script.splitlines():
            assert line in page_lines, line
        for command in ("curl" + part for part in script.split("curl")[1:]):
            assert command.strip() in PAGE, command


def test_the_daily_rows_have_exactly_the_pages_fields(served: tuple[str, Emulator]) -> None:
    """The page's table for device-daily-consumption: deviceId, deviceName, serialNumber, date, consumption."""
    table = PAGE[PAGE.index("The response is one row per (deviceId, date):") : PAGE.index("A meter with no readings")]
    fields = [line.split(" | ")[0] for line in table.splitlines() if " | " in line][1:]
    assert fields == ["deviceId", "deviceName", "serialNumber", "date", "consumption"]
    _, emulator = served
    rows = [
        r.to_wire()
        for r in emulator.daily_buckets(
            ORG_NORTH, datetime(2026, 5, 18, 22, tzinfo=UTC), datetime(2026, 5, 25, 22, tzinfo=UTC)
        )
    ]
    assert {tuple(r) for r in rows} == {tuple(fields), tuple(f for f in fields if f != "date")}
