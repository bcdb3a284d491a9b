"""openapi/openapi.json is generated from the app (`make openapi`) and must not go stale; it must
also describe what docs/api-guide.md promises."""

import json
import re
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
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["apiKey"]["name"] == "X-API-Key"
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
        "quality",  # Round 3
    }
    for name in ("DailyConsumption", "IntervalConsumption"):
        quality = spec["components"]["schemas"][name]["properties"]["quality"]
        enum = next(option["enum"] for option in quality["anyOf"] if "enum" in option)
        assert enum == ["measured", "estimated", "reset", "suspect"]
        assert "suspect" in quality["description"]


def test_every_parameter_and_field_is_explained():
    spec = json.loads(spec_text())
    for path, operations in spec["paths"].items():
        for op in operations.values():
            for param in op.get("parameters", []):
                assert param.get("description"), (path, param["name"])
                # Swagger UI's "Try it out" fills in parameter-level examples only (never schema.examples);
                # a cursor has none, since no valid cursor exists before a first page.
                assert "examples" not in param["schema"], (path, param["name"])
                assert ("example" in param) == (param["name"] != "cursor"), (path, param["name"])
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert "application/problem+json" in response["content"], (path, status)
    for name in ("Meter", "Reading", "DailyConsumption", "DeviceStatus", "Change"):
        for field, schema in spec["components"]["schemas"][name]["properties"].items():
            assert schema.get("description") or schema.get("examples") or "$ref" in schema, (name, field)


def test_operation_ids_and_schema_names_are_explicit():
    spec = json.loads(spec_text())
    ids = {(method, path): op["operationId"] for path, ops in spec["paths"].items() for method, op in ops.items()}
    assert {
        ("get", "/meters"): "listMeters",
        ("get", "/meters/{meter_id}"): "getMeter",
        ("get", "/readings"): "listReadings",
        ("get", "/consumption/daily"): "getDailyConsumption",
        ("get", "/devices/{device_id}/status"): "getDeviceStatus",
        ("get", "/changes"): "listChanges",
        ("get", "/backends"): "listBackends",
        ("get", "/healthz"): "getHealth",
        ("get", "/readyz"): "getReadiness",
        ("get", "/metrics"): "getMetrics",
    }.items() <= ids.items()
    # every operation named by hand: lowerCamelCase, unique, never FastAPI's `list_meters_meters_get`
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)+", i) for i in ids.values()), ids
    assert len(set(ids.values())) == len(ids)
    schemas = spec["components"]["schemas"]
    assert {"MeterPage", "ReadingPage", "ChangePage"} <= set(schemas)
    assert not [name for name in schemas if "_" in name or "[" in name]
    assert "HTTPValidationError" not in json.dumps(spec)


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_types_a_client_generator_gets_right():
    spec = json.loads(spec_text())
    schemas = spec["components"]["schemas"]
    # one backend enum, referenced everywhere
    enums = [n for n in _walk(spec) if n.get("enum") and set(n["enum"]) == {"iometer", "waltero"}]
    assert enums == [schemas["BackendName"]]
    for path, ops in spec["paths"].items():
        for op in ops.values():
            params = {p["name"]: p for p in op.get("parameters", [])}
            for param in params.values():
                assert "anyOf" not in param["schema"], (path, param["name"])  # optional = omitted, never null
            if "start" in params and "end" in params:
                assert params["start"]["schema"] == {**params["end"]["schema"], "title": "Start"}, path
            if "backend" in params:
                assert params["backend"]["schema"] == {"$ref": "#/components/schemas/BackendName"}

    def param(path, name):
        return next(p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == name)

    assert param("/readings", "start")["schema"]["format"] == "date-time"
    assert param("/changes", "since")["schema"]["format"] == "date-time"
    assert param("/consumption/daily", "start")["schema"]["format"] == "date"

    def formats(schema, field):
        prop = schemas[schema]["properties"][field]
        return {b.get("format") for b in prop.get("anyOf", [prop]) if b.get("type") == "string"}

    for schema, field in (
        ("Reading", "time"),
        ("Change", "time"),
        ("Change", "changed_at"),
        ("DeviceStatus", "last_seen"),
        ("BackendInfo", "token_expires_at"),
    ):
        assert formats(schema, field) == {"date-time"}, (schema, field)
    assert formats("DailyConsumption", "date") == {"date"}


def test_each_error_status_has_its_own_true_example_and_headers():
    spec = json.loads(spec_text())
    seen = set()
    for path, ops in spec["paths"].items():
        for op in ops.values():
            for status, response in op["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                examples = response["content"]["application/problem+json"]["examples"]
                assert examples, (path, status)
                for example in examples.values():
                    value = example["value"]
                    assert value["status"] == int(status), (path, status, value)
                    assert value["type"].startswith("/problems/")
                    assert value["title"]
                    assert value["detail"]
                    seen.add((int(status), value["type"]))
                headers = response["headers"]
                assert "X-Request-ID" in headers
                assert ("Retry-After" in headers) == (status == "503"), (path, status)
                if status == "422":
                    assert all(e["value"]["errors"] for e in examples.values())
    assert {s for s, _ in seen} == {401, 404, 422, 501, 502, 503, 504}
    assert len({t for _, t in seen}) >= 9  # not one example copied under every status


def test_cached_operations_declare_their_headers_and_the_304():
    spec = json.loads(spec_text())
    declared = spec["components"]["headers"]
    assert set(declared) >= {"ETag", "Cache-Control", "Age", "X-Cache", "X-Request-ID", "Retry-After"}
    for path in ("/meters", "/meters/{meter_id}", "/readings", "/consumption/daily", "/devices/{device_id}/status"):
        responses = spec["paths"][path]["get"]["responses"]
        lists = path in ("/meters", "/readings")  # pages: `Link: rel="next"` when there is more
        negotiated = "{" not in path  # the lists that also answer CSV and NDJSON: `Vary: Accept`
        expected = {"ETag", "Cache-Control", "Age", "X-Cache", "X-Request-ID"} | ({"Link"} if lists else set())
        expected |= {"Vary"} if negotiated else set()
        assert set(responses["200"]["headers"]) == expected
        assert "content" not in responses["304"]
        assert "ETag" in responses["304"]["headers"]
        assert ("Vary" in responses["304"]["headers"]) == negotiated
    for path in ("/healthz", "/metrics"):
        assert "304" not in spec["paths"][path]["get"]["responses"]
