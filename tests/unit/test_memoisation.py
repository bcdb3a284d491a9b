"""Memoise only what is bounded: no `functools.lru_cache`/`functools.cache` in app/ on anything a
client controls (a query string, a header, an id). A flood of distinct 60 KB query strings once grew
RSS by 230 MiB through such a memo; the response cache's own memo of parsed query strings is bounded
in bytes instead (tests/integration/test_memory_bounds.py)."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"

ALLOWED = {
    ("infra/timeutil.py", "_zone_names"): "no argument",
    ("api/docs_ui.py", "_asset_bytes"): "a fixed set of packaged files",
    ("backends/iometer/documents.py", "schema_sdl"): "no argument",
    ("backends/iometer/payloads.py", "parse_obis"): "OBIS codes the vendor sends, never a client's",
    ("backends/iometer/payloads.py", "decimal_obis"): "OBIS codes the vendor sends, never a client's",
    ("backends/iometer/emulator/data.py", "day_arrays"): "emulator only; fixed-size keys and values (~10 MB at most)",
}


def memoised() -> set[tuple[str, str]]:
    found = set()
    for path in APP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                if name in ("lru_cache", "cache"):
                    found.add((path.relative_to(APP).as_posix(), node.name))
    return found


def test_only_functions_of_bounded_non_client_input_are_memoised() -> None:
    found = memoised()
    assert ("infra/timeutil.py", "_zone_names") in found  # the scan sees decorators at all
    assert found <= set(ALLOWED), sorted(found - set(ALLOWED))


def test_the_local_midnight_table_is_bounded_in_bytes() -> None:
    """`app.domain.intervals.MIDNIGHTS` is a memo by hand (zone and year come from a client's query):
    whatever zones and years are asked for, it holds at most its byte limit (least recently used out)."""
    from datetime import date
    from zoneinfo import ZoneInfo, available_timezones

    from app.domain.intervals import MIDNIGHTS, MidnightTable

    assert MIDNIGHTS.limit <= 8 * 1024 * 1024
    table = MidnightTable(limit=200_000)
    zones = sorted(available_timezones())[:40]
    for i, name in enumerate(zones):
        for year in (1970 + i, 2026, 9998 - i):
            table.days(date(year, 12, 30), date(year + 1, 1, 2) if year < 9998 else date(year, 12, 31), ZoneInfo(name))
            assert table.bytes <= table.limit
    assert 1 < len(table._years) < 40
    assert table.bytes == sum(table._sizes.values())
