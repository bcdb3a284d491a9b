"""The emulator's executable schema: its own SDL file (`schema.graphql` beside this module, written from
the vendor's page) with resolvers attached in Python.

The adapter validates its documents against its own copy (`app/backends/iometer/schema.graphql`); the
two are kept apart on purpose so the emulator can disagree with the adapter (a test compares them).
Variants (`BREAKS` in `app.py`) edit the SDL text or the resolvers to break one pinned assumption.

Pinned behaviour served here (UPSTREAMS.md):
- `readings(startTime, limit, cursor)`: `time >= startTime`, ascending by time (ties by meter), at most
  `limit` (default 100, capped at 1000, and at most the emulator's `page_size`); `cursor` is opaque
  and non-null exactly when more readings remain; it is only valid with the same `startTime` on the
  same field it came from.
- `Pagination{limit, offset}` for `installations` and `meters` (limit default 100, at most 1000).
- Something the partner cannot see (another partner's installation, meter or device) is `null`.
- `obisCode(format:)` honours `hex`, `decimal` (the default), `short` and `full`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeAlias
from urllib.parse import urlencode

from graphql import GraphQLError, GraphQLObjectType, GraphQLResolveInfo, GraphQLScalarType, GraphQLSchema, build_schema

from app.backends.iometer.emulator.data import (
    DemoData,
    DeviceRecord,
    InstallationRecord,
    MeterRecord,
    Obis,
    PartnerRecord,
    ReadingRecord,
    ValueRecord,
    format_obis,
)
from app.infra.timeutil import format_rfc3339, from_epoch, parse_rfc3339

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


@dataclass
class RequestContext:
    """Per request: who asks, the data, and emulator options."""

    data: DemoData
    partner_id: str
    page_size: int | None
    disabled: set[str] = field(default_factory=set)
    breaks: frozenset[str] = frozenset()
    """Emulator variants in force (`app.BREAKS`)."""
    """Installations the partner disabled (`disableInstallation`)."""

    def visible_installation(self, installation_id: str | None) -> InstallationRecord | None:
        if installation_id is None or installation_id in self.disabled:
            return None
        inst = self.data.installation(installation_id)
        return inst if inst is not None and inst.partner_id == self.partner_id else None

    def installations(self) -> list[InstallationRecord]:
        return [i for i in self.data.partner_installations(self.partner_id) if i.id not in self.disabled]

    def meters(self) -> list[MeterRecord]:
        return [m for i in self.installations() for m in self.meters_of(i)]

    def meters_of(self, inst: InstallationRecord) -> list[MeterRecord]:
        return [m for mid in inst.meter_ids if (m := self.data.meter(mid)) is not None]

    def devices_of(self, inst: InstallationRecord) -> list[DeviceRecord]:
        return [d for did in inst.device_ids if (d := self.data.device(did)) is not None]


Info: TypeAlias = "GraphQLResolveInfo[RequestContext]"


def bad_input(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


def _ctx(info: Info) -> RequestContext:
    return info.context


# --- scalars -------------------------------------------------------------------------------------


def _uuid(value: Any) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise GraphQLError(f"Uuid cannot represent {value!r}")
    return value.lower()


def _datetime(value: Any) -> str:
    if not isinstance(value, str):
        raise GraphQLError(f"DateTime cannot represent {value!r}")
    try:
        parse_rfc3339(value)
    except ValueError as exc:
        raise GraphQLError(f"DateTime cannot represent {value!r}: {exc}") from exc
    return value


def _string(name: str) -> Callable[[Any], str]:
    def coerce(value: Any) -> str:
        if not isinstance(value, str):
            raise GraphQLError(f"{name} cannot represent {value!r}")
        return value

    return coerce


def _install_scalar(schema: GraphQLSchema, name: str, coerce: Callable[[Any], Any]) -> None:
    scalar = schema.type_map[name]
    assert isinstance(scalar, GraphQLScalarType)
    # Instance attributes shadow the identity defaults that build_schema leaves on custom scalars.
    scalar.coerce_input_value = coerce  # type: ignore[method-assign]
    scalar.parse_value = coerce  # type: ignore[method-assign,assignment]


# --- paging --------------------------------------------------------------------------------------


def _limit(value: Any, default: int = DEFAULT_LIMIT) -> int:
    if value is None:
        return default
    if value < 1:
        raise bad_input("limit must be at least 1")
    return min(int(value), MAX_LIMIT)


def _paginate(items: list[Any], pagination: dict[str, Any] | None) -> list[Any]:
    pagination = pagination or {}
    # `first`/`after` only exist in the `pagination_first_after` variant's SDL
    limit = _limit(pagination.get("limit", pagination.get("first")))
    offset = pagination.get("offset", pagination.get("after")) or 0
    if offset < 0:
        raise bad_input("offset must not be negative")
    return items[offset : offset + limit]


def _encode_cursor(scope: str, start: str | None, last: ReadingRecord, order: int) -> str:
    raw = json.dumps({"scope": scope, "start": start, "t": last.time, "m": order}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, scope: str, start: str | None) -> tuple[float, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position = (float(raw["t"]), int(raw["m"]))
        same = raw["scope"] == scope and raw["start"] == start
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise bad_input("invalid cursor") from exc
    if not same:
        raise bad_input("cursor does not belong to this query (pass the same startTime)")
    return position


def _readings_response(
    ctx: RequestContext, scope: str, meters: list[MeterRecord], args: dict[str, Any]
) -> dict[str, Any]:
    start_text: str | None = args.get("startTime")
    limit = _limit(args.get("limit"))
    if ctx.page_size is not None:
        limit = min(limit, ctx.page_size)
    cursor = args.get("cursor")
    if "cursor_ignored" in ctx.breaks:
        cursor = None
    after = _decode_cursor(cursor, scope, start_text) if cursor else None
    start = parse_rfc3339(start_text).timestamp() if start_text else 0.0
    stream: Iterator[ReadingRecord] = ctx.data.iter_readings(meters, start, after)
    page: list[ReadingRecord] = []
    more = False
    for reading in stream:
        if len(page) == limit:
            more = True
            break
        page.append(reading)
    next_cursor = None
    if more:
        last = page[-1]
        next_cursor = _encode_cursor(scope, start_text, last, ctx.data.meter_order(last.meter_id))
    if "receive_order" in ctx.breaks and len(page) > 1:
        # Receive order: the page's readings arrive newest first, and the oldest one twice.
        page = [*reversed(page), page[0]]
    return {"readings": page, "cursor": next_cursor}


# --- resolvers -----------------------------------------------------------------------------------


def _find_meter(ctx: RequestContext, candidates: list[MeterRecord], args: dict[str, Any]) -> MeterRecord | None:
    meter_id, number = args.get("id"), args.get("number")
    if meter_id is None and number is None:
        raise bad_input("meter needs id or number")
    found = [m for m in candidates if (meter_id is None or m.id == meter_id) and (number is None or m.number == number)]
    # Several meters may share a number (a physical meter moved between installations): the most recent wins.
    return found[-1] if found else None


def _connect_url(partner: PartnerRecord, args: dict[str, Any]) -> str:
    query = {"partner": partner.id, "redirect_uri": args["redirectUrl"]}
    if args.get("state") is not None:
        query["state"] = args["state"]
    return "https://app.iometer.de/connect?" + urlencode(query)


def _query_resolvers() -> dict[str, Callable[..., Any]]:
    def partner(_: Any, info: Info) -> PartnerRecord:
        return _ctx(info).data.partners[_ctx(info).partner_id]

    def installation(_: Any, info: Info, id: str) -> InstallationRecord | None:
        return _ctx(info).visible_installation(id)

    def installations(_: Any, info: Info, pagination: dict[str, Any] | None = None) -> list[Any]:
        return _paginate(_ctx(info).installations(), pagination)

    def readings(_: Any, info: Info, **args: Any) -> dict[str, Any]:
        ctx = _ctx(info)
        return _readings_response(ctx, "partner", ctx.meters(), args)

    def connect_url(_: Any, info: Info, **args: Any) -> str:
        return _connect_url(partner(None, info), args)

    return {
        "partner": partner,
        "installation": installation,
        "installations": installations,
        "readings": readings,
        "connectUrl": connect_url,
    }


def _partner_resolvers(query: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    def meters(_: PartnerRecord, info: Info, pagination: dict[str, Any] | None = None) -> list[Any]:
        return _paginate(_ctx(info).meters(), pagination)

    def meter(_: PartnerRecord, info: Info, **args: Any) -> MeterRecord | None:
        return _find_meter(_ctx(info), _ctx(info).meters(), args)

    return {
        "id": lambda p, _: p.id,
        "name": lambda p, _: p.name,
        "installations": query["installations"],
        "installation": query["installation"],
        "meters": meters,
        "meter": meter,
        "connectUrl": query["connectUrl"],
        "readings": query["readings"],
    }


def _installation_resolvers() -> dict[str, Callable[..., Any]]:
    def meter(inst: InstallationRecord, info: Info, **args: Any) -> MeterRecord | None:
        return _find_meter(_ctx(info), _ctx(info).meters_of(inst), args)

    def device(inst: InstallationRecord, info: Info, id: str) -> DeviceRecord | None:
        return next((d for d in _ctx(info).devices_of(inst) if d.id == id), None)

    def current_meter(inst: InstallationRecord, info: Info) -> MeterRecord | None:
        return _ctx(info).data.meter(inst.current_meter_id) if inst.current_meter_id else None

    def current_device(inst: InstallationRecord, info: Info) -> DeviceRecord | None:
        return _ctx(info).data.device(inst.current_device_id) if inst.current_device_id else None

    def readings(inst: InstallationRecord, info: Info, **args: Any) -> dict[str, Any]:
        ctx = _ctx(info)
        return _readings_response(ctx, f"installation:{inst.id}", ctx.meters_of(inst), args)

    return {
        "externalId": lambda i, _: i.external_id,
        "id": lambda i, _: i.id,
        "meter": meter,
        "meters": lambda i, info: _ctx(info).meters_of(i),
        "currentMeter": current_meter,
        "device": device,
        "devices": lambda i, info: _ctx(info).devices_of(i),
        "currentDevice": current_device,
        "readings": readings,
    }


def _meter_resolvers() -> dict[str, Callable[..., Any]]:
    def readings(meter: MeterRecord, info: Info, **args: Any) -> dict[str, Any]:
        return _readings_response(_ctx(info), f"meter:{meter.id}", [meter], args)

    return {
        "id": lambda m, _: m.id,
        "number": lambda m, _: m.number,
        "installation": lambda m, info: _ctx(info).data.installation(m.installation_id),
        "readings": readings,
    }


def _device_resolvers() -> dict[str, dict[str, Callable[..., Any]]]:
    return {
        "Device": {
            "id": lambda d, _: d.id,
            "bridge": lambda d, _: d,
            "core": lambda d, _: d,
        },
        "DeviceBridge": {"connectionStatus": lambda d, _: d.bridge_connection},
        "DeviceCore": {
            "connectionStatus": lambda d, _: d.core_connection,
            "attachmentStatus": lambda d, _: d.attachment,
            "batteryLevel": lambda d, _: d.battery_level,
            "powerStatus": lambda d, _: d.power,
            "pinStatus": lambda d, _: d.pin,
        },
    }


def _reading_resolvers() -> dict[str, dict[str, Callable[..., Any]]]:
    def meter(reading: ReadingRecord, info: Info) -> MeterRecord | None:
        return _ctx(info).data.meter(reading.meter_id)

    def obis_code(value: ValueRecord, info: Info, format: str | None = None) -> str:
        default = "hex" if "hex_default" in _ctx(info).breaks else "decimal"
        return format_obis(value.obis, (format or default).lower())

    return {
        "MeterReading": {
            "meter": meter,
            "time": lambda r, _: format_rfc3339(from_epoch(r.time)),
            "values": lambda r, _: r.values,
        },
        "MeterReadingValue": {
            "obisCode": obis_code,
            "value": lambda v, _: v.value,
            "unit": lambda v, _: v.unit,
        },
    }


_OBIS_DECIMAL = re.compile(r"(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\*255)?")
_OBIS_HEX = re.compile(r"([0-9a-f]{2})-([0-9a-f]{2}):([0-9a-f]{2})\.([0-9a-f]{2})\.([0-9a-f]{2})\*ff", re.IGNORECASE)
_OBIS_SHORT = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})")


def parse_obis(text: str) -> Obis:
    """An OBIS code in any `ObisFormat` form (short codes are electricity, channel 0)."""
    if m := _OBIS_DECIMAL.fullmatch(text):
        a, b, c, d, e = (int(g) for g in m.groups())
    elif m := _OBIS_HEX.fullmatch(text):
        a, b, c, d, e = (int(g, 16) for g in m.groups())
    elif m := _OBIS_SHORT.fullmatch(text):
        a, b, (c, d, e) = 1, 0, (int(g) for g in m.groups())
    else:
        raise bad_input(f"not an OBIS code: {text!r}")
    return (a, b, c, d, e)


REPLAY_LIMIT = 24 * 3600.0
"""`meterReadings(startTime)` replays at most this far back (UPSTREAMS.md: up to 24 h)."""


def _subscription_resolvers(poll: float) -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    """`(subscribe, resolve)` per Subscription field. Readings are "received" when taken; new ones
    appear as the emulator's clock passes each 15-minute slot, checked every `poll` seconds."""

    async def follow(ctx: RequestContext, meters: list[MeterRecord], start: float) -> AsyncIterator[ReadingRecord]:
        data = ctx.data
        after: tuple[float, int] | None = None
        while True:
            for reading in data.iter_readings(meters, start, after):
                after = (reading.time, data.meter_order(reading.meter_id))
                yield reading
            if after is not None:
                start = after[0]
            await asyncio.sleep(poll)

    async def meter_readings(_: Any, info: Info, startTime: str | None = None) -> AsyncIterator[ReadingRecord]:
        ctx = _ctx(info)
        now = ctx.data.clock()
        start = parse_rfc3339(startTime).timestamp() if startTime else now
        async for reading in follow(ctx, ctx.meters(), max(start, now - REPLAY_LIMIT)):
            yield reading

    def live_readings(
        _: Any, info: Info, installationId: str, obisCodes: list[str | None] | None = None
    ) -> AsyncIterator[ReadingRecord]:
        # checked before the stream starts, so an unknown installation is an `error`, not a silent stream
        ctx = _ctx(info)
        inst = ctx.visible_installation(str(installationId))
        if inst is None:
            raise GraphQLError("installation not found", extensions={"code": "NOT_FOUND"})
        wanted = {parse_obis(code) for code in obisCodes or () if code} or None
        return live(ctx, inst, wanted)

    async def live(
        ctx: RequestContext, inst: InstallationRecord, wanted: set[Obis] | None
    ) -> AsyncIterator[ReadingRecord]:
        # live: only readings taken from now on
        async for reading in follow(ctx, ctx.meters_of(inst), math.floor(ctx.data.clock()) + 1):
            if wanted is not None:
                reading = ReadingRecord(
                    reading.meter_id, reading.time, tuple(v for v in reading.values if v.obis in wanted)
                )
            yield reading

    def event(reading: ReadingRecord, _: Info, **__: Any) -> ReadingRecord:
        return reading

    return {"meterReadings": (meter_readings, event), "liveReadings": (live_readings, event)}


def _mutation_resolvers() -> dict[str, Callable[..., Any]]:
    def disable_installation(_: Any, info: Info, installationId: str) -> bool:
        ctx = _ctx(info)
        if ctx.visible_installation(installationId) is None:
            return False
        ctx.disabled.add(installationId)
        return True

    return {"disableInstallation": disable_installation}


def schema_sdl() -> str:
    """The emulator's own SDL text (package data next to this module)."""
    return resources.files("app.backends.iometer.emulator").joinpath("schema.graphql").read_text(encoding="utf-8")


_SDL_BREAKS: dict[str, tuple[str, str]] = {
    "schema_drift": ("  externalId: String\n  id: Uuid!\n  meter(", "  id: Uuid!\n  meter("),
    "obis_format_upper": ("  hex\n  decimal\n  short\n  full\n", "  HEX\n  DECIMAL\n  SHORT\n  FULL\n"),
    "pagination_first_after": ("  limit: Int\n  offset: Int\n", "  first: Int\n  after: Int\n"),
}
"""Variants that edit the SDL: (text, replacement)."""


def _upper_uuid(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def build_executable_schema(subscription_poll: float = 1.0, breaks: frozenset[str] = frozenset()) -> GraphQLSchema:
    """The emulator's SDL (edited by SDL variants) with its resolvers and checking scalars."""
    sdl = schema_sdl()
    for name in sorted(breaks & _SDL_BREAKS.keys()):
        old, new = _SDL_BREAKS[name]
        assert old in sdl, name
        sdl = sdl.replace(old, new)
    schema = build_schema(sdl)
    _install_scalar(schema, "Uuid", _uuid)
    _install_scalar(schema, "DateTime", _datetime)
    _install_scalar(schema, "ObisCode", _string("ObisCode"))
    _install_scalar(schema, "MeterNumber", _string("MeterNumber"))
    if "upper_ids" in breaks:
        uuid_type = schema.type_map["Uuid"]
        assert isinstance(uuid_type, GraphQLScalarType)
        uuid_type.serialize = _upper_uuid  # type: ignore[method-assign]
        uuid_type.coerce_output_value = _upper_uuid  # type: ignore[method-assign]
    query = _query_resolvers()
    resolvers: dict[str, dict[str, Callable[..., Any]]] = {
        "Query": query,
        "Mutation": _mutation_resolvers(),
        "Partner": _partner_resolvers(query),
        "Installation": _installation_resolvers(),
        "Meter": _meter_resolvers(),
        **_device_resolvers(),
        **_reading_resolvers(),
    }
    for type_name, fields in resolvers.items():
        graphql_type = schema.type_map[type_name]
        assert isinstance(graphql_type, GraphQLObjectType)
        for field_name, resolve in fields.items():
            if field_name in graphql_type.fields:  # an SDL variant may have dropped it
                graphql_type.fields[field_name].resolve = resolve
    subscription = schema.type_map["Subscription"]
    assert isinstance(subscription, GraphQLObjectType)
    for field_name, (subscribe, resolve) in _subscription_resolvers(subscription_poll).items():
        subscription.fields[field_name].subscribe = subscribe
        subscription.fields[field_name].resolve = resolve
    return schema
