"""The facade's normalized resources, as internal apps see them (docs/api-guide.md).

Every timestamp is an aware UTC `datetime` serialized as RFC 3339 with `Z`; energy is in kWh,
power in W, volume in m3. Routes and the service speak only these types.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from app.infra.timeutil import format_rfc3339

UtcDateTime = Annotated[
    datetime,
    PlainSerializer(format_rfc3339, return_type=str, when_used="json"),
    Field(description="RFC 3339 timestamp in UTC, ending in `Z`.", examples=["2026-05-19T06:15:00Z"]),
]

BackendName = str
"""A registered vendor's name (`app.backends.registry`); the OpenAPI lists the configured ones as an enum."""
Medium = Literal["electricity", "water", "gas", "heat", "unknown"]
Quality = Literal["measured", "estimated", "reset", "suspect"]

QUALITY_DESCRIPTION = (
    "How the figure was obtained (null when `consumption` is null). `measured`: register readings on both "
    "boundaries, or the vendor's own figure; `estimated`: a boundary interpolated between readings (at most "
    "FACADE_MAX_GAP apart); `reset`: a register reset or meter swap was inferred inside the row (the drop "
    "counts zero, counting goes on from the new base); `suspect`: a reading was ignored as a glitch, or the "
    "figure is above the plausibility bound of the meter's medium. `complete` is false for `reset` and "
    "`suspect` rows."
)


_SHARED_FIELDS_SETS: dict[frozenset[str], frozenset[str]] = {}
_ALL_FIELDS: dict[type, frozenset[str]] = {}
# `Resource.trusted` sets pydantic's slots through their descriptors (a row costs a third of a validation)
_new = object.__new__
_set = object.__setattr__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


class Resource(BaseModel):
    # Finite numbers only (`allow_inf_nan=False`): JSON has no infinity, and a value read back from
    # Redis (`app.shared.entries`) is validated as strictly as one from a vendor.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def model_post_init(self, context: Any, /) -> None:
        # Thousands of these live in the caches. Pydantic gives each instance its own set of the
        # field names it was built with (728 bytes for six names); one shared frozenset per shape
        # brings a Reading from ~1.2 KB to ~0.5 KB. Resources are frozen and never copied with
        # `update=`, so pydantic never needs to add to it.
        names = frozenset(self.__pydantic_fields_set__)
        object.__setattr__(self, "__pydantic_fields_set__", _SHARED_FIELDS_SETS.setdefault(names, names))

    @classmethod
    def trusted(cls, fields: dict[str, Any]) -> Self:
        """An instance from `fields`, every field given and each value already of its field's type (a
        finite float, an aware UTC datetime, ...): equal to `cls(**fields)` at a third of its cost, for
        hot paths that build rows by the hundred from values they have checked. Nothing is checked here.
        `fields` becomes the instance's own: the caller must not keep or change it."""
        names = _ALL_FIELDS.get(cls)
        if names is None:
            names = frozenset(cls.model_fields)
            names = _ALL_FIELDS[cls] = _SHARED_FIELDS_SETS.setdefault(names, names)
        instance = _new(cls)
        _set(instance, "__dict__", fields)
        _set_fields_set(instance, names)
        _set_extra(instance, None)
        _set_private(instance, None)
        return instance


class Meter(Resource):
    """A metering point. IOmeter meters are electricity meters; a Waltero device is one meter."""

    id: str = Field(description="`<backend>:<upstream id>`", examples=["iometer:8d116ece-1738-47d9-bd9c-172411e20b8f"])
    backend: BackendName = Field(description="Which vendor holds the meter.", examples=["iometer"])
    serial_number: str = Field(description="The number printed on the meter.", examples=["1EMH0007058153"])
    name: str | None = Field(description="Display name, if the vendor has one.", examples=["Kitchen sub-meter"])
    medium: Medium = Field(description="What the meter measures.", examples=["electricity"])
    unit: str | None = Field(description="Normalized unit of the meter's main register.", examples=["kWh"])
    site_id: str | None = Field(
        description="Where the meter belongs: an IOmeter installation or a Waltero organization (prefixed).",
        examples=["iometer:3f1c2f5e-5a0e-4c4b-9a57-1d6b1e0a2b11"],
    )
    device_id: str | None = Field(
        description="The device reading the meter (prefixed); use it with `/devices/{device_id}/status`.",
        examples=["iometer:9d0a6c1e-2f4b-4d8e-8a3b-5c7e9f1a2b3c"],
    )


class Reading(Resource):
    """One value of one register at one instant."""

    meter_id: str = Field(examples=["iometer:8d116ece-1738-47d9-bd9c-172411e20b8f"])
    time: UtcDateTime
    quantity: str = Field(
        description="`energy_import`, `energy_import_t1`, `energy_import_t2`, `energy_export`, `power`, `volume`, "
        "or `obis:<code>` for any other OBIS register.",
        examples=["energy_import"],
    )
    obis: str | None = Field(description="OBIS code in decimal form, when the vendor gave one.", examples=["1-0:1.8.0"])
    value: float = Field(
        description="Cumulative register value (or instantaneous power) in `unit`.", examples=[12345.678]
    )
    unit: str | None = Field(description="`kWh`, `W`, `m3`, or the unit as sent for other registers.", examples=["kWh"])


class DailyConsumption(Resource):
    """Consumption of one meter over one local calendar day."""

    meter_id: str = Field(examples=["waltero:11111111-1111-1111-1111-111111111101"])
    date: dt.date = Field(description="Local calendar day in the requested `tz`.", examples=["2026-05-19"])
    consumption: float | None = Field(description="Consumption in `unit`; null when unknown.", examples=[0.412])
    unit: str | None = Field(description="Normalized unit.", examples=["m3"])
    complete: bool = Field(
        description="True when the whole day is covered by data and the figure needed neither the glitch nor the "
        "reset rule and is plausible (never for `reset` or `suspect`).",
        examples=[True],
    )
    source: Literal["upstream", "derived"] = Field(
        description="`upstream`: the vendor's own daily figure; `derived`: computed from register readings.",
        examples=["upstream"],
    )
    quality: Quality | None = Field(default=None, description=QUALITY_DESCRIPTION, examples=["measured"])


class DeviceStatus(Resource):
    """Health of a device as last reported."""

    device_id: str = Field(examples=["iometer:9d0a6c1e-2f4b-4d8e-8a3b-5c7e9f1a2b3c"])
    backend: BackendName = Field(examples=["iometer"])
    online: bool | None = Field(description="Whether the device is reachable now; null when unknown.", examples=[True])
    last_seen: UtcDateTime | None = Field(
        description="Newest data point, when known.", examples=["2026-05-19T06:00:00Z"]
    )
    battery_percent: int | None = Field(description="0..100.", examples=[87])
    battery_voltage: float | None = Field(description="Volts.", examples=[3.61])
    power_source: Literal["battery", "wired"] | None = Field(examples=["battery"])
    rssi_dbm: float | None = Field(description="Radio signal strength in dBm.", examples=[-71.0])
    details: dict[str, Any] = Field(
        description="Every vendor status as given, for diagnosis.",
        examples=[{"bridge_connection": "connected", "core_connection": "connected"}],
    )


class Change(Resource):
    """A post-hoc correction of a stored reading."""

    id: str = Field(description="`<backend>:<change id>`", examples=["waltero:4c1d8d2e-0f0e-4c1a-8f51-0a5b9a2f7e10"])
    backend: BackendName = Field(examples=["waltero"])
    meter_id: str = Field(examples=["waltero:11111111-1111-1111-1111-111111111101"])
    time: UtcDateTime = Field(description="Time of the corrected reading.")
    previous_value: float | None = Field(description="Value before the correction, in `unit`.", examples=[123.4])
    new_value: float | None = Field(description="Value after the correction, in `unit`.", examples=[124.3])
    unit: str | None = Field(examples=["m3"])
    actor: Literal["system", "user"] | None = Field(examples=["user"])
    changed_at: UtcDateTime = Field(description="When the correction was made.")


class BackendError(Resource):
    """One backend's failure inside a list that spans backends."""

    backend: BackendName = Field(examples=["waltero"])
    status: int = Field(description="The HTTP status this failure would have had alone.", examples=[503])
    title: str = Field(examples=["Upstream rate limit"])
    detail: str = Field(examples=["Waltero kept answering 429 after 4 attempts."])


T = TypeVar("T")


class Page(Resource, Generic[T]):
    """A page of a list. Pass `next_cursor` back as `cursor` for the next page."""

    items: list[T]
    next_cursor: str | None = Field(description="Opaque; null on the last page.", examples=[None])
    errors: list[BackendError] | None = Field(
        default=None, description="Present when one backend failed and another answered."
    )


class DailyConsumptionList(Resource):
    items: list[DailyConsumption]
    next_cursor: None = Field(default=None, description="Always null: the whole window is one answer.")
    errors: list[BackendError] | None = Field(
        default=None, description="Present when one backend failed and another answered."
    )


def _local_rfc3339(value: datetime) -> str:
    """The local wall clock with its offset; an offset of zero is written `Z`, never `+00:00`."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


LocalDateTime = Annotated[
    datetime,
    PlainSerializer(_local_rfc3339, return_type=str, when_used="json"),
    Field(
        description="RFC 3339 on the local wall clock of the requested `tz`, with its UTC offset at that instant "
        "(so a DST day shows both offsets); an offset of zero (`tz=UTC`, or a zone at UTC+0 then) is written `Z`, "
        "never `+00:00`.",
        examples=["2026-03-29T03:00:00+02:00"],
    ),
]


class IntervalConsumption(Resource):
    """Consumption of one meter over one local interval: a quarter-hour, an hour, a day or a month."""

    meter_id: str = Field(examples=["iometer:8d116ece-1738-47d9-bd9c-172411e20b8f"])
    start: LocalDateTime = Field(examples=["2026-03-29T01:00:00+01:00"])
    end: LocalDateTime = Field(description="Exclusive.", examples=["2026-03-29T03:00:00+02:00"])
    consumption: float | None = Field(description="Consumption in `unit`; null when unknown.", examples=[0.412])
    unit: str | None = Field(description="Normalized unit.", examples=["kWh"])
    complete: bool = Field(
        description="True when the whole interval is covered by data and the figure needed neither the glitch nor "
        "the reset rule and is plausible (never for `reset` or `suspect`; a month: every one of its days).",
        examples=[True],
    )
    source: Literal["upstream", "derived"] = Field(
        description="`upstream`: the vendor's own daily figures (or their sum); `derived`: computed from register "
        "readings.",
        examples=["derived"],
    )
    quality: Quality | None = Field(
        default=None, description=QUALITY_DESCRIPTION + " A month: the worst of its days.", examples=["measured"]
    )


class IntervalConsumptionList(Resource):
    """A page of `/consumption`. Pass `next_cursor` back as `cursor` for the next page."""

    items: list[IntervalConsumption]
    next_cursor: str | None = Field(default=None, description="Opaque; null on the last page.", examples=[None])
    errors: list[BackendError] | None = Field(
        default=None, description="Present when one backend failed and another answered."
    )


class BackendInfo(Resource):
    name: BackendName = Field(examples=["waltero"])
    mode: Literal["live", "sandbox"] = Field(examples=["sandbox"])
    capabilities: list[str] = Field(examples=[["meters", "readings", "consumption.daily", "device_status", "changes"]])
    status: Literal["ok", "degraded", "down", "unknown"] = Field(
        description="`ok` when the last upstream call succeeded and the circuit is closed.", examples=["ok"]
    )
    circuit: Literal["closed", "open", "half_open"] = Field(examples=["closed"])
    circuit_retry_after: float | None = Field(default=None, description="Seconds until an open circuit probes again.")
    token_expires_at: UtcDateTime | None = Field(
        default=None, description="When the vendor token ends (Waltero); never the token itself."
    )
    cache: dict[str, int] = Field(default_factory=dict, description="Entries held per cache.", examples=[{"meters": 2}])


class SharedCacheInfo(Resource):
    status: Literal["up", "degraded", "down", "off"] = Field(
        description="The tier replicas share (Redis): `off` when FACADE_REDIS_URL is unset; `down` while "
        "unreachable or refusing this replica (credentials, a server older than 7.0): each replica then "
        "serves from its own cache; `degraded` when many recent commands failed.",
        examples=["up"],
    )
    mode: Literal["standalone", "cluster", "sentinel"] = Field(
        default="standalone", description="FACADE_REDIS_MODE: how the replicas reach Redis.", examples=["standalone"]
    )
    last_error: str | None = Field(
        default=None,
        description="The class of the latest Redis failure (e.g. `TimeoutError`, `AuthenticationError`, "
        "`OutOfMemoryError`), while down and for a few seconds after; null when none.",
        examples=[None],
    )


class BackendList(Resource):
    items: list[BackendInfo]
    shared_cache: SharedCacheInfo = Field(default_factory=lambda: SharedCacheInfo(status="off"))


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["/problems/upstream-unavailable"])
    title: str = Field(examples=["Upstream unavailable"])
    status: int = Field(examples=[503])
    detail: str = Field(examples=["Waltero is failing; the circuit is open."])
    backend: BackendName | None = Field(default=None, examples=["waltero"])
    errors: list[dict[str, Any]] | None = Field(default=None, description="Each invalid field (422 only).")
