"""The served spec, executed: every operation run with its parameter examples ("Try it out" with the
defaults) against the sandbox answers 2xx with data and the headers the spec declares; the error
examples are what the service really answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from app.factory import create_app
from app.infra.config import Settings
from scripts.export_openapi import spec_text
from tests.support.servers import serve_in_thread

KEY = "try-it-out-key-0123456789"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    # over a loopback socket, as Swagger UI calls it (and so a streaming operation can be read in part)
    with serve_in_thread(create_app(Settings(FACADE_SANDBOX=True, FACADE_API_KEYS=KEY, FACADE_CHANGES_POLL=0))) as url:
        yield url


@pytest.fixture
async def sandbox(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        yield client


async def first_event(client: httpx.AsyncClient, path: str, query: list[tuple[str, str]]) -> tuple[int, str]:
    """Status and the first event of a `text/event-stream` answer (the stream itself never ends)."""
    async with client.stream("GET", path, params=query, headers={"X-API-Key": KEY}) as r:
        text = ""
        async for chunk in r.aiter_text():
            text += chunk
            if "\ndata:" in text or r.status_code != 200:
                break
        return r.status_code, text


def request_of(path: str, op: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """What Swagger UI sends on "Try it out" → "Execute" without touching a field."""
    query: list[tuple[str, str]] = []
    for param in op.get("parameters", []):
        if "example" not in param:
            assert not param.get("required"), (path, param["name"])
            continue
        example = param["example"]
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", example)
        else:
            for value in example if isinstance(example, list) else [example]:
                query.append((param["name"], str(value)))
    return path, query


def has_data(body: Any) -> bool:
    if isinstance(body, dict) and "items" in body:
        return bool(body["items"]) and all(has_data(item) for item in body["items"])
    if isinstance(body, dict):
        return any(v not in (None, [], {}) for k, v in body.items() if k not in ("id", "backend", "device_id"))
    return bool(body)


async def test_every_operation_answers_with_data_from_its_examples(sandbox: httpx.AsyncClient) -> None:
    spec = (await sandbox.get("/openapi.json")).json()
    ran = []
    for template, ops in spec["paths"].items():
        for method, op in ops.items():
            path, query = request_of(template, op)
            if "text/event-stream" in op["responses"].get("200", {}).get("content", {}):
                status, text = await first_event(sandbox, path, query)
                assert status == 200, (op["operationId"], status, text[:300])
                assert "data:" in text, (op["operationId"], status, text[:300])
                ran.append(op["operationId"])
                continue
            r = await sandbox.request(method, path, params=query, headers={"X-API-Key": KEY})
            assert 200 <= r.status_code < 300, (op["operationId"], path, query, r.status_code, r.text[:300])
            declared = op["responses"][str(r.status_code)]
            media = next(iter(declared.get("content", {"application/json": {}})))
            assert r.headers["content-type"].split(";")[0] == media.split(";")[0], op["operationId"]
            if method != "head":  # a HEAD answer has the GET's headers and no body
                body = r.json() if media == "application/json" else r.text
                assert has_data(body), (op["operationId"], body)
            if op["operationId"] == "getDailyConsumption" and method == "get":
                assert any(row["consumption"] is not None for row in body["items"])
            # the declared headers are exactly the ones the service sends (of those the spec can declare)
            sent = {name.lower() for name in r.headers}
            conditional = {"link"}  # only on a page with more to come
            assert {h.lower() for h in declared["headers"]} - conditional <= sent, op["operationId"]
            if "etag" in sent:
                assert "ETag" in declared["headers"], op["operationId"]
                assert "304" in op["responses"], op["operationId"]
                again = await sandbox.request(
                    method, path, params=query, headers={"X-API-Key": KEY, "If-None-Match": r.headers["etag"]}
                )
                assert again.status_code == 304
                assert not again.content
                assert {h.lower() for h in op["responses"]["304"]["headers"]} <= set(again.headers)
            ran.append(op["operationId"])
    assert len(ran) == sum(len(ops) for ops in spec["paths"].values()) >= 10


def example_of(status: int, name: str | None = None) -> dict[str, Any]:
    spec = json.loads(spec_text())
    for ops in spec["paths"].values():
        for op in ops.values():
            response = op["responses"].get(str(status))
            if response:
                examples = response["content"]["application/problem+json"]["examples"]
                return dict((examples[name] if name else next(iter(examples.values())))["value"])
    raise AssertionError(status)


async def test_error_examples_are_what_the_service_answers(sandbox: httpx.AsyncClient) -> None:
    missing_key = await sandbox.get("/meters")
    assert missing_key.status_code == 401
    assert missing_key.json() == example_of(401)
    assert missing_key.headers["www-authenticate"].startswith("Bearer")

    headers = {"X-API-Key": KEY}
    too_large = await sandbox.get("/meters", params={"limit": 5000}, headers=headers)
    assert too_large.status_code == 422
    assert too_large.json() == example_of(422)

    unknown = await sandbox.get("/meters/iometer:00000000-0000-4000-8000-000000000000", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json() == example_of(404, "unknownMeter")
    prefix = await sandbox.get("/meters/acme:42", headers=headers)
    assert prefix.status_code == 404
    assert prefix.json() == example_of(404, "unknownPrefix")

    no_feed = await sandbox.get(
        "/changes", params={"since": "2026-01-01T00:00:00Z", "backend": "iometer"}, headers=headers
    )
    assert no_feed.status_code == 501
    assert no_feed.json() == example_of(501)
