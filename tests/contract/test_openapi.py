"""openapi/openapi.json is generated from the app (`make openapi`) and must not go stale; it must
also describe what CONTRACT.md promises."""

import json
from pathlib import Path

from scripts.export_openapi import spec_text

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_spec_is_current():
    on_disk = (ROOT / "openapi" / "openapi.json").read_text()
    assert on_disk == spec_text(), "openapi/openapi.json is stale: run `make openapi` and commit it"


def test_spec_covers_the_contract():
    spec = json.loads(spec_text())
    paths = spec["paths"]
    for path in (
        "/meters",
        "/meters/{meter_id}",
        "/readings",
        "/consumption/daily",
        "/devices/{device_id}/status",
        "/changes",
        "/backends",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert "get" in paths[path], path
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["apiKey"]["name"] == "X-API-Key"
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert paths[open_path]["get"]["security"] == []
    meter = spec["components"]["schemas"]["Meter"]["properties"]
    assert set(meter) == {"id", "backend", "serial_number", "name", "medium", "unit", "site_id", "device_id"}
    assert set(spec["components"]["schemas"]["DailyConsumption"]["properties"]) == {
        "meter_id",
        "date",
        "consumption",
        "unit",
        "complete",
        "source",
    }


def test_every_parameter_and_field_is_explained():
    spec = json.loads(spec_text())
    for path, operations in spec["paths"].items():
        for op in operations.values():
            for param in op.get("parameters", []):
                assert param.get("description"), (path, param["name"])
                assert (
                    "example" in param
                    or "examples" in param
                    or "example" in param["schema"]
                    or "examples" in param["schema"]
                ), (path, param["name"])
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert "application/problem+json" in response["content"], (path, status)
    for name in ("Meter", "Reading", "DailyConsumption", "DeviceStatus", "Change"):
        for field, schema in spec["components"]["schemas"][name]["properties"].items():
            assert schema.get("description") or schema.get("examples") or "$ref" in schema, (name, field)
