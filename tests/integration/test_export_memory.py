"""A year of one meter's 15-minute readings streams as NDJSON at a steady RSS (real processes).

The facade runs as its own uvicorn process in live mode against an IOmeter emulator process holding
more than a year of history; the facade's RSS is sampled every 20 ms while the client reads the stream
(`bench/ndjson_export.py`, which `make bench` also runs)."""

from __future__ import annotations

from datetime import datetime

import pytest

from bench.ndjson_export import measure


@pytest.mark.timeout(300)  # two processes and a year of quarter hours
def test_a_year_of_quarter_hours_streams_with_rss_growth_under_20_mb() -> None:
    result = measure(days=366)
    assert result["content_type"] == "application/x-ndjson"
    assert result["rows"] >= 366 * 96 - 4  # the whole window, not one page
    first = datetime.fromisoformat(result["first"])
    last = datetime.fromisoformat(result["last"])
    assert (last - first).days >= 365
    assert result["rss_growth_mib"] * 1.048576 < 20, result
