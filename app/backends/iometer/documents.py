"""Every GraphQL document the IOmeter adapter sends, and where the pinned schema lives.

Caller input only ever travels in `variables`; nothing is formatted into a document. Every document
is one named operation, and the request carries that name as `operationName` (servers log and meter
by it). The unit tests validate each document here against `schema.graphql`, so a field renamed in the
schema fails a test instead of a request; the sandbox serves its own SDL written from the vendor's
page, so the two can disagree and the doctor (`python -m app.doctor`) can tell.

`obisCode` is asked without `format:`: the enum's values are our guess (the page lost them), and an
unknown enum value would fail every readings call. The server's default form is normalized instead
(`payloads.parse_obis` reads decimal, full, hex and short).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from gql import GraphQLRequest, gql
from graphql import OperationDefinitionNode

SCHEMA_FILE = "schema.graphql"

PAGE_LIMIT_MAX = 1000
"""Pinned: `limit` of `readings` and `Pagination` is at most 1000."""


@cache
def schema_sdl() -> str:
    """The pinned SDL text (package data next to this module)."""
    return resources.files("app.backends.iometer").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def _named(text: str) -> GraphQLRequest:
    """A document of exactly one named operation, sent with that name as `operationName`."""
    request = gql(text)
    names = [d.name.value for d in request.document.definitions if isinstance(d, OperationDefinitionNode) and d.name]
    if len(names) != 1:
        raise ValueError("a document must hold exactly one named operation")
    return GraphQLRequest(request, operation_name=names[0])


READING_FIELDS = """
    fragment ReadingFields on MeterReading {
      time
      values {
        obisCode
        value
        unit
      }
    }
"""
"""The selection of one reading, shared by every readings document."""

MEDIUM_PROBE = "readings(limit: 1) { readings { values { obisCode } } }"
"""A meter's first reading's OBIS codes: their medium group (A) says what the meter measures."""

PARTNER_ID = _named(
    """
    query PartnerId {
      partner { id }
    }
    """
)
"""A cheap authenticated round trip (readiness)."""

INSTALLATIONS = _named(
    f"""
    query Installations($pagination: Pagination) {{
      installations(pagination: $pagination) {{
        id
        currentDevice {{ id }}
        currentMeter {{ id }}
        meters {{ id number {MEDIUM_PROBE} }}
        devices {{ id }}
      }}
    }}
    """
)
"""One offset page of the partner's installations with their meters and devices (ids only)."""

METER_FIELDS = f"""
    fragment MeterFields on Meter {{
      id
      number
      {MEDIUM_PROBE}
      installation {{
        id
        currentDevice {{ id }}
        currentMeter {{ id }}
        meters {{ id }}
        devices {{ id }}
      }}
    }}
"""
"""One meter with what its installation says about devices, shared by the lookups by id and by number."""

METER = _named(
    """
    query Meter($id: Uuid!) {
      partner { meter(id: $id) { ...MeterFields } }
    }
    """
    + METER_FIELDS
)
"""One meter; `meter` is null when the partner cannot see it."""

METER_BY_NUMBER = _named(
    """
    query MeterByNumber($number: MeterNumber!) {
      partner { meter(number: $number) { ...MeterFields } }
    }
    """
    + METER_FIELDS
)
"""The meter with this printed number (`GET /meters?serial_number=`); null when there is none."""

METER_READINGS = _named(
    """
    query MeterReadings($meterId: Uuid!, $startTime: DateTime, $limit: Int, $cursor: String) {
      partner {
        meter(id: $meterId) {
          id
          readings(startTime: $startTime, limit: $limit, cursor: $cursor) {
            readings { ...ReadingFields }
            cursor
          }
        }
      }
    }
    """
    + READING_FIELDS
)
"""One cursor page of one meter's readings (pinned ascending by time; the adapter sorts anyway)."""

PARTNER_READINGS = _named(
    """
    query PartnerReadings($startTime: DateTime, $limit: Int, $cursor: String) {
      readings(startTime: $startTime, limit: $limit, cursor: $cursor) {
        readings {
          meter { id }
          ...ReadingFields
        }
        cursor
      }
    }
    """
    + READING_FIELDS
)
"""One cursor page of every partner meter's readings (one chain for all meters)."""

DEVICE_STATUS = _named(
    """
    query DeviceStatus($installationId: Uuid!, $deviceId: Uuid!) {
      installation(id: $installationId) {
        id
        device(id: $deviceId) {
          id
          bridge { connectionStatus }
          core {
            connectionStatus
            attachmentStatus
            batteryLevel
            powerStatus
            pinStatus
          }
        }
      }
    }
    """
)
"""A device's bridge and core status, found through its installation."""

ALL_DOCUMENTS: dict[str, GraphQLRequest] = {
    "PartnerId": PARTNER_ID,
    "Installations": INSTALLATIONS,
    "Meter": METER,
    "MeterReadings": METER_READINGS,
    "PartnerReadings": PARTNER_READINGS,
    "DeviceStatus": DEVICE_STATUS,
}
