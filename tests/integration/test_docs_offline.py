"""Swagger UI and ReDoc render in a real headless Chromium on a machine without internet access:
every asset comes from the service, and the browser cannot resolve any other host."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.api.docs_ui import ASSET_REWRITES, ASSETS, REDOC_LOGO_CDN, REDOC_LOGO_INLINE
from app.factory import create_app
from app.infra.config import Settings
from tests.support.browser import open_page
from tests.support.servers import serve_in_thread
from tests.support.tools import require_tool

# Only 127.0.0.1 resolves: any request to another host fails as it would without internet access.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
_LOADED = re.compile(r'<(?:script|img|link|iframe|source)\b[^>]*?\b(?:src|href)="([^"]*)"', re.IGNORECASE)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(create_app(Settings(FACADE_SANDBOX=True))) as url:
        yield url


def render(url: str, tmp: Path) -> tuple[str, set[str]]:
    """The page's DOM after its scripts ran, and every URL the page itself asked for (from Chromium's
    NetLog; the browser's own background requests have no initiator and are left out)."""
    chromium = require_tool("chromium")
    net_log = tmp / "net.json"
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        f"--log-net-log={net_log}",
        OFFLINE,
        "--virtual-time-budget=20000",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    refused = [line for line in done.stderr.splitlines() if "Content Security Policy" in line]
    assert not refused, refused  # the page's own CSP refused nothing: a console error otherwise
    origin = url.split("/", 3)[:3]
    events = json.loads(net_log.read_text())["events"]
    asked = {
        e["params"]["url"]
        for e in events
        if e.get("params", {}).get("initiator") == "/".join(origin) and "url" in e["params"]
    }
    return done.stdout, asked


def operation_ids(base_url: str) -> list[str]:
    spec = httpx.get(f"{base_url}/openapi.json").json()
    return [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]


def assert_only_local_loads(dom: str) -> None:
    for target in _LOADED.findall(dom):
        assert target.startswith(("/", "data:", "blob:", "http://127.0.0.1:")), target


def assert_only_own_requests(base_url: str, asked: set[str], expected: set[str]) -> None:
    assert asked, "no request made by the page was logged"
    outside = {u for u in asked if not u.startswith(base_url + "/")}
    assert not outside, outside
    assert {base_url + path for path in expected} <= asked


def test_swagger_ui_renders_every_operation_offline(base_url: str, tmp_path: Path) -> None:
    dom, asked = render(f"{base_url}/docs", tmp_path)
    assert_only_own_requests(base_url, asked, {"/openapi.json", "/docs/assets/swagger-init.js"})
    blocks = re.findall(r'class="opblock opblock-(\w+)', dom)
    assert len(blocks) == len(operation_ids(base_url))
    assert set(blocks) <= {"get", "head"}
    assert 'class="info"' in dom
    assert "Meter facade" in dom
    assert_only_local_loads(dom)


def test_redoc_renders_the_operation_list_offline(base_url: str, tmp_path: Path) -> None:
    dom, asked = render(f"{base_url}/redoc", tmp_path)
    # ReDoc's sidebar logo is served inline (the CDN URL rewritten): nothing for the CSP to refuse
    assert_only_own_requests(base_url, asked, {"/openapi.json"})
    assert 'alt="redocly logo"' in dom and REDOC_LOGO_INLINE.decode() in dom
    listed = re.findall(r'data-item-id="tag/[^/"]+/operation/([^"]+)"', dom)
    assert listed
    assert sorted(listed) == sorted(operation_ids(base_url))
    assert_only_local_loads(dom)


def test_the_live_demo_script_runs_under_its_csp(base_url: str, tmp_path: Path) -> None:
    # no inline script: the page's CSP allows only /live-demo.js, which fills the meter list itself
    dom, asked = render(f"{base_url}/live-demo", tmp_path)
    assert_only_own_requests(base_url, asked, {"/live-demo.js"})
    assert re.search(r'<option value="iometer:[0-9a-f-]{36}">', dom), dom[:2000]
    assert_only_local_loads(dom)


def test_pages_name_no_outside_host_and_assets_are_pinned(base_url: str) -> None:
    with httpx.Client(base_url=base_url) as client:
        redirect = client.get("/")
        assert redirect.status_code == 307
        assert redirect.headers["location"] == "/docs"
        for page in ("/docs", "/redoc"):
            r = client.get(page)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/html")
            assert "//" not in r.text.replace("<!doctype html>", ""), page  # no absolute or protocol-relative URL
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp
            assert "http" not in csp
            for target in _LOADED.findall(r.text):
                assert target in ASSETS, target  # versioned paths served below
        for path, (file, _) in ASSETS.items():
            r = client.get(path)
            assert r.status_code == 200, path
            if file in ASSET_REWRITES:  # the npm copy with its one outside URL replaced, nothing else
                assert REDOC_LOGO_CDN not in r.content
                assert r.content == file.read_bytes().replace(REDOC_LOGO_CDN, REDOC_LOGO_INLINE), path
            else:
                assert r.content == file.read_bytes(), path
            assert "immutable" in r.headers["cache-control"]
        init = client.get("/docs/assets/swagger-init.js").text
        assert "http" not in init
        assert "validatorUrl: null" in init


def test_the_live_demo_plots_power_against_a_time_axis(tmp_path: Path) -> None:
    """The demo page in Chromium, on the sandbox: the replayed hours are drawn with HH:MM ticks along x.

    The stream never ends, so the test waits (real time, bounded) until the page has drawn the replay,
    then reads its DOM: on a busy machine the replay may take seconds to arrive."""
    with (
        serve_in_thread(create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))) as url,
        open_page(f"{url}/live-demo", tmp_path / "profile", OFFLINE) as page,
    ):
        drawn = page.wait_for(
            "(document.querySelector('#line')?.getAttribute('points') || '').trim().split(/\\s+/).length >= 6"
            " && document.querySelectorAll('#xaxis text.tick').length >= 3",
            timeout=60,
        )
        dom = str(page.evaluate("document.documentElement.outerHTML"))
    assert drawn, dom[-3000:]
    assert 'id="xaxis"' in dom
    ticks = re.findall(r'<text[^>]*class="tick"[^>]*>(\d\d:\d\d)</text>', dom)
    assert 3 <= len(ticks) <= 9, (ticks, dom[-3000:])
    assert ticks == sorted(ticks) or "00:00" in ticks  # left to right in time (a midnight may wrap)
    points = re.search(r'<polyline id="line"[^>]*points="([^"]+)"', dom)
    assert points and len(points.group(1).split()) >= 6  # 6 h of 15-minute instants replayed
    assert "time (local)" in dom
