"""The IOmeter client decodes answers with orjson and falls back to Python's parser for what only that
one reads (`NaN`, `Infinity`), so such a page is not lost; a body that is no JSON is still a bad answer."""

from __future__ import annotations

import math

import httpx
import pytest

from app.backends.iometer import documents as docs
from app.backends.iometer.client import decode_json
from app.infra.errors import UpstreamBadResponse
from tests.unit.backends.iometer.test_client import Harness

PAGE = (
    b'{"data": {"partner": {"meter": {"readings": {"cursor": null, "readings": ['
    b'{"time": "2026-05-01T00:00:00Z", "values": [{"obisCode": "1-0:1.8.0", "value": NaN, "unit": "kWh"}]},'
    b'{"time": "2026-05-01T00:15:00Z", "values": [{"obisCode": "1-0:1.8.0", "value": 12.5, "unit": "kWh"}]}'
    b"]}}}}}"
)


async def test_a_page_with_nan_is_decoded_not_refused() -> None:
    h = Harness(lambda r: httpx.Response(200, content=PAGE, headers={"content-type": "application/json"}))
    data = await h.client.query(docs.METER_READINGS, {"meterId": "m", "startTime": "x", "limit": 2, "cursor": None})
    rows = data["partner"]["meter"]["readings"]["readings"]
    assert math.isnan(rows[0]["values"][0]["value"])
    assert rows[1]["values"][0]["value"] == 12.5


async def test_a_body_that_is_no_json_is_still_a_bad_answer() -> None:
    h = Harness(lambda r: httpx.Response(200, content=b"<html>gateway</html>"))
    with pytest.raises(UpstreamBadResponse):
        await h.partner_id()


def test_orjson_and_the_fallback_read_the_same_values() -> None:
    assert decode_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert decode_json(b'{"v": Infinity}') == {"v": math.inf}


def test_unit_strings_are_read_case_insensitively_but_milli_never_becomes_mega() -> None:
    from app.backends.iometer.payloads import _ENERGY_TO_KWH, _POWER_TO_W, unit_exponent

    assert unit_exponent(_ENERGY_TO_KWH, "kwh") == 0
    assert unit_exponent(_ENERGY_TO_KWH, "KWH") == 0
    assert unit_exponent(_ENERGY_TO_KWH, "mwh") == 3  # all lower case: its case is lost, MWh is the only one
    assert unit_exponent(_POWER_TO_W, "MW") == 6
    assert unit_exponent(_POWER_TO_W, "mW") is None  # milliwatts, not megawatts: unknown, passed on as sent
    assert unit_exponent(_POWER_TO_W, "w") == 0
