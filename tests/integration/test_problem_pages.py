"""Every problem `type` resolves to a page the service serves without a key, and framework answers
(405, unknown paths, ...) use the same `/problems/*` types as every other problem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.api.problems import PROBLEM_TYPES
from app.infra import errors
from tests.support.apps import fake_app, running
from tests.support.fake_backend import FakeBackend

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


def types_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("type"), str) and node["type"].startswith(("/problems", "about:")):
            yield node["type"]
        for value in node.values():
            yield from types_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from types_in(value)


def app():  # type: ignore[no-untyped-def]
    return fake_app({"iometer": FakeBackend("iometer"), "waltero": FakeBackend("waltero")})


async def test_framework_answers_use_the_problem_types_never_about_blank():
    async with running(app()) as c:
        post = await c.post("/meters")
        assert post.status_code == 405
        assert post.headers["content-type"] == "application/problem+json"
        assert post.json()["type"] == "/problems/method-not-allowed"
        assert "GET" in post.headers["allow"]
        nowhere = await c.get("/nowhere")
        assert nowhere.json()["type"] == "/problems/not-found"
        bad = await c.get("/meters", params={"limit": 0})
        assert bad.json()["type"] == "/problems/invalid-request"
    async with running(app(), key=None) as c:
        assert (await c.get("/meters")).json()["type"] == "/problems/unauthorized"


async def test_every_problem_type_resolves_to_a_page_without_a_key():
    emitted = {cls("x").type for cls in subclasses(errors.FacadeError) if cls.__init__ is not None}
    emitted |= {errors.FacadeError("x").type, "/problems/not-ready", "/problems/unauthorized"}
    emitted |= {"/problems/method-not-allowed"}
    spec_types = set(types_in(json.loads(SPEC.read_text())))
    assert spec_types and all(t.startswith("/problems/") for t in spec_types), spec_types
    everything = emitted | spec_types | {t.uri for t in PROBLEM_TYPES.values()}
    async with running(app(), key=None) as c:  # no key: the pages are open
        for uri in sorted(everything):
            slug = uri.removeprefix("/problems/")
            as_json = await c.get(uri)
            assert as_json.status_code == 200, uri
            page = as_json.json()
            assert page["type"] == uri
            assert page["title"] == PROBLEM_TYPES[slug].title
            assert page["when"] and page["what_to_do"] and page["fields"]
            as_html = await c.get(uri, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
            assert as_html.headers["content-type"].startswith("text/html")
            assert PROBLEM_TYPES[slug].title in as_html.text and "What to do" in as_html.text
            assert "http" not in as_html.headers["content-security-policy"]
            as_text = await c.get(uri, headers={"Accept": "text/plain"})
            assert as_text.headers["content-type"].startswith("text/plain")
            assert as_text.text.startswith(uri)
        index = (await c.get("/problems")).json()
        assert {i["type"] for i in index["items"]} == {t.uri for t in PROBLEM_TYPES.values()}


async def test_the_status_of_a_page_is_the_status_its_problems_carry():
    async with running(app()) as c:
        for answer in (await c.post("/meters"), await c.get("/nowhere"), await c.get("/meters?limit=0")):
            problem = answer.json()
            page = (await c.get(problem["type"])).json()
            assert page["status"] == problem["status"] == answer.status_code
        unknown = await c.get("/problems/no-such-thing")
        assert unknown.status_code == 404
        assert unknown.json()["type"] == "/problems/not-found"
