"""Exports: CSV and NDJSON renderings of the facade's lists (CONTRACT.md "Round 2 additions").

- `negotiate` picks the representation from `?format=` (a browser link) or `Accept`:
  `text/csv` → CSV, `application/x-ndjson` → NDJSON, anything else → JSON (the default). An unknown
  `format` value is a 422. Errors are never negotiated: they stay `application/problem+json`.
- CSV is written by the `csv` module (RFC 4180 quoting, `\\r\\n` line ends), a header row of the
  resource's fields in the JSON order, and one row per item with the JSON values: null → empty cell,
  booleans `true`/`false`, numbers as JSON writes them, timestamps as RFC 3339. A text cell that a
  spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a leading `'`
  (OWASP "CSV injection"); ids, units and timestamps never start that way.
- NDJSON is one JSON object per line (`\\n`), the same object as in the JSON `items`. It is built by
  async generators over batches (pages) of items and flushed in chunks of about 64 KiB, so memory stays
  bounded by one batch plus one chunk however long the window is. The first batch is fetched before the
  status line (`primed`), so an error up front is still a problem; an error later ends the stream with
  a last line `{"error": <problem>}`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Annotated, Any, Literal, TypeVar, cast

from fastapi import Query
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from app.api.http_cache import cache_headers, etag_matches, etag_of
from app.api.problems import problem_body
from app.guard.provenance import Answer
from app.infra.errors import FacadeError, InvalidRequest
from app.infra.timeutil import Clock

T = TypeVar("T")

Format = Literal["json", "csv", "ndjson"]
FORMATS: tuple[Format, ...] = ("json", "csv", "ndjson")
CSV_TYPE = "text/csv"
NDJSON_TYPE = "application/x-ndjson"
CHUNK_BYTES = 64 * 1024

_MEDIA: dict[str, Format] = {
    CSV_TYPE: "csv",
    NDJSON_TYPE: "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/json": "json",
    "application/problem+json": "json",
    "application/*": "json",
    "*/*": "json",
}


FormatParam = Annotated[
    str | None,
    Query(
        max_length=32,
        description="`json` (the default), `csv` (with `Content-Disposition`, for a browser link) or `ndjson`; "
        "overrides `Accept`. "
        "Without it, `Accept: text/csv` answers CSV and `Accept: application/x-ndjson` streams NDJSON. "
        "Unknown values are a 422.",
        examples=["json"],
    ),
]


def export_responses(fields: Sequence[str]) -> dict[int | str, dict[str, Any]]:
    """The 200 answer's CSV and NDJSON forms, for the OpenAPI (merged with the route's JSON)."""
    header = ",".join(fields)
    return {
        200: {
            "description": "The list as JSON; as CSV with `Accept: text/csv` or `format=csv` (a header row of "
            "the item fields, `Content-Disposition: attachment`); as NDJSON with `Accept: application/x-ndjson` "
            "(one item per line, the whole window streamed without paging).",
            "content": {
                CSV_TYPE: {"schema": {"type": "string"}, "example": header + "\r\n"},
                NDJSON_TYPE: {"schema": {"type": "string", "description": "One JSON item per line."}},
            },
        }
    }


# --- negotiation -----------------------------------------------------------------------------------


def _accepted(accept: str) -> list[tuple[float, int, str]]:
    ranges = []
    for position, part in enumerate(accept.split(",")[:32]):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media and q > 0:
            ranges.append((-q, position, media.lower()))
    ranges.sort()
    return ranges


def negotiate(accept: str | None, format_param: str | None) -> Format:
    """The representation to answer with. `format` (`json`, `csv`, `ndjson`) wins over `Accept`;
    `Accept` is read by quality, the first supported type winning; no supported type → JSON."""
    if format_param is not None:
        value = format_param.strip().lower()
        if value not in FORMATS:
            raise InvalidRequest(f"unknown format {format_param[:32]!r}; one of: {', '.join(FORMATS)}", field="format")
        return value  # type: ignore[return-value]
    if not accept:
        return "json"
    for _, _, media in _accepted(accept):
        found = _MEDIA.get(media)
        if found is not None:
            return found
    return "json"


# --- CSV -------------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    """One JSON value (as `model_dump(mode="json")` gives it) as a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def fields_of(model: type[BaseModel]) -> list[str]:
    """The CSV columns of a resource: its JSON fields, in order."""
    return list(model.model_fields)


def _csv_text(rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def csv_row(item: BaseModel, fields: Sequence[str]) -> list[str]:
    data = item.model_dump(mode="json")
    return [cell(data.get(f)) for f in fields]


def to_csv(items: Iterable[BaseModel], fields: Sequence[str]) -> bytes:
    """A whole CSV document: the header row, then one row per item."""
    return _csv_text([list(fields), *(csv_row(i, fields) for i in items)]).encode()


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def filename(*parts: str, extension: str) -> str:
    """`meters.csv`, `consumption-hour-2026-03-29-2026-03-30.csv`: only `[A-Za-z0-9._-]`."""
    stem = "-".join(_UNSAFE_NAME.sub("_", p).strip("_") for p in parts if p) or "export"
    return f"{stem[:120]}.{extension}"


def content_disposition(name: str) -> str:
    return f'attachment; filename="{name}"'


CSV_MEDIA = "text/csv; charset=utf-8"


def csv_response(
    items: Iterable[BaseModel], fields: Sequence[str], name: str, headers: dict[str, str] | None = None
) -> Response:
    body = to_csv(items, fields)
    return Response(
        body, media_type=CSV_MEDIA, headers={**(headers or {}), "content-disposition": content_disposition(name)}
    )


def errors_header(errors: Sequence[Any]) -> dict[str, str]:
    """CSV has no place for a list's `errors`: `X-Backend-Errors: waltero=503, ...` says which backend
    is missing from a partial answer, in CSV and NDJSON alike (only the JSON form carries the full
    `errors` entries)."""
    if not errors:
        return {}
    return {"x-backend-errors": ", ".join(f"{e.backend}={e.status}" for e in errors)}


# --- streaming -------------------------------------------------------------------------------------


async def primed(batches: AsyncIterator[T]) -> AsyncIterator[T]:
    """Fetch the first batch now, so that a failure before any data (unknown meter, vendor down) is
    raised here and answered as a problem, not as a 200 stream cut short. Returns the whole sequence."""
    try:
        first = await anext(batches)
    except StopAsyncIteration:
        first = None
        exhausted = True
    else:
        exhausted = False

    async def all_batches() -> AsyncIterator[T]:
        if exhausted:
            return
        yield cast(T, first)
        async for batch in batches:
            yield batch

    return all_batches()


def error_line(exc: FacadeError) -> bytes:
    """The last line of an NDJSON stream that failed after it started: `{"error": <problem>}`."""
    return b'{"error":' + problem_body(exc.status, exc.title, exc.detail, type_=exc.type, backend=exc.backend) + b"}\n"


async def ndjson_lines(batches: AsyncIterable[Iterable[BaseModel]], chunk: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    """One JSON object per line from batches of items, flushed in chunks of about `chunk` bytes.

    A facade error after the stream started (the status line is sent) ends it with `error_line`."""
    pending: list[bytes] = []
    size = 0
    try:
        async for batch in batches:
            for item in batch:
                line = item.__pydantic_serializer__.to_json(item) + b"\n"
                pending.append(line)
                size += len(line)
                if size >= chunk:
                    yield b"".join(pending)
                    pending.clear()
                    size = 0
    except FacadeError as exc:
        pending.append(error_line(exc))
    if pending:
        yield b"".join(pending)


async def csv_lines(
    batches: AsyncIterable[Iterable[BaseModel]], fields: Sequence[str], chunk: int = CHUNK_BYTES
) -> AsyncIterator[bytes]:
    """The CSV document (header first) from batches of items, flushed in chunks of about `chunk` bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(fields)
    async for batch in batches:
        for item in batch:
            writer.writerow(csv_row(item, fields))
            if buffer.tell() >= chunk:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


def ndjson_response(lines: AsyncIterator[bytes], name: str, headers: dict[str, str] | None = None) -> StreamingResponse:
    return StreamingResponse(
        lines,
        media_type=NDJSON_TYPE,
        headers={
            **(headers or {}),
            "content-disposition": content_disposition(name),
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
        },
    )


# --- answering a route in the negotiated form ------------------------------------------------------


def wanted(request: Request, format_param: str | None) -> Format:
    return negotiate(request.headers.get("accept"), format_param)


def render_csv(
    request: Request,
    answer: Answer[Any],
    items: Iterable[BaseModel],
    fields: Sequence[str],
    name: str,
    next_cursor: str | None = None,
) -> Response:
    """The CSV form of a route's answer, with the same caching headers as its JSON (an ETag of the CSV
    bytes, 304 on a match). CSV has no place for `next_cursor`: when there is more, `Link: <url>;
    rel="next"` is the same request with that cursor. Not kept for the hit path, which serves JSON only."""
    clock: Clock = request.app.clock  # type: ignore[attr-defined]
    body = to_csv(items, fields)
    etag = etag_of(body)
    now = clock()
    provenance = answer.provenance
    fresh_until = provenance.fresh_until(now)
    max_age = max(0.0, fresh_until - now) if not answer.errors else 0.0
    result = provenance.cache_result
    request.scope.setdefault("facade", {})["cache"] = result
    headers = {
        k.decode(): v.decode()
        for k, v in cache_headers(etag, max_age=max_age, age=now - provenance.created(now), result=result)
    }
    headers.update(errors_header(answer.errors))
    headers["content-disposition"] = content_disposition(name)
    if next_cursor:
        headers["link"] = f'<{request.url.include_query_params(cursor=next_cursor)}>; rel="next"'

    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=CSV_MEDIA, headers=headers)


async def render_ndjson(
    batches: AsyncIterator[Iterable[BaseModel]], name: str, errors: Sequence[Any] = ()
) -> StreamingResponse:
    """Stream `batches` as NDJSON. The first batch is read before the status line goes out."""
    return ndjson_response(ndjson_lines(await primed(batches)), name, headers=errors_header(errors))


async def one_batch(items: Sequence[T]) -> AsyncIterator[Sequence[T]]:
    """An answer already whole in memory (bounded by the window limits) as a single batch."""
    yield items
