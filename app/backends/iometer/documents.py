"""Every GraphQL document the IOmeter adapter sends, and where the pinned schema lives.

Caller input only ever travels in `variables`; nothing is formatted into a document. The unit tests
validate each document here against `schema.graphql` (the same SDL the sandbox serves), so a field
renamed in the schema fails a test instead of a request.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from gql import GraphQLRequest, gql

SCHEMA_FILE = "schema.graphql"

PAGE_LIMIT_MAX = 1000
"""Pinned: `limit` of `readings` and `Pagination` is at most 1000."""


@cache
def schema_sdl() -> str:
    """The pinned SDL text (package data next to this module)."""
    return resources.files("app.backends.iometer").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


PARTNER_ID = gql(
    """
    query PartnerId {
      partner { id }
    }
    """
)
"""A cheap authenticated round trip (readiness)."""

INSTALLATIONS = gql(
    """
    query Installations($pagination: Pagination) {
      installations(pagination: $pagination) {
        id
        currentDevice { id }
        meters { id number }
        devices { id }
      }
    }
    """
)
"""One offset page of the partner's installations with their meters and devices (ids only)."""

METER = gql(
    """
    query Meter($id: Uuid!) {
      partner {
        meter(id: $id) {
          id
          number
          installation {
            id
            currentDevice { id }
          }
        }
      }
    }
    """
)
"""One meter; `meter` is null when the partner cannot see it."""

METER_BY_NUMBER = gql(
    """
    query MeterByNumber($number: MeterNumber!) {
      partner {
        meter(number: $number) {
          id
          number
          installation {
            id
            currentDevice { id }
          }
        }
      }
    }
    """
)
"""The meter with this printed number (`GET /meters?serial_number=`); null when there is none."""

METER_READINGS = gql(
    """
    query MeterReadings($meterId: Uuid!, $startTime: DateTime, $limit: Int, $cursor: String) {
      partner {
        meter(id: $meterId) {
          id
          readings(startTime: $startTime, limit: $limit, cursor: $cursor) {
            readings {
              time
              values {
                obisCode(format: decimal)
                value
                unit
              }
            }
            cursor
          }
        }
      }
    }
    """
)
"""One cursor page of one meter's readings, ascending by time, OBIS codes in decimal (`1-0:1.8.0`)."""

PARTNER_READINGS = gql(
    """
    query PartnerReadings($startTime: DateTime, $limit: Int, $cursor: String) {
      readings(startTime: $startTime, limit: $limit, cursor: $cursor) {
        readings {
          meter { id }
          time
          values {
            obisCode(format: decimal)
            value
            unit
          }
        }
        cursor
      }
    }
    """
)
"""One cursor page of every partner meter's readings (one chain for all meters)."""

DEVICE_STATUS = gql(
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
