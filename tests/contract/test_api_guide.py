"""docs/api-guide.md stays true: its problem types are the service's, its example ids exist in the
sandbox, its TTLs are the defaults, and the README points to it (a clone has no ../shared)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from app.factory import create_app
from app.infra import errors
from app.infra.config import Settings

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "api-guide.md").read_text()


def test_problem_types_in_the_guide_are_the_services():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.FacadeError)]
    raised = {c("x").type for c in classes if not c.__subclasses__()}  # the leaves are what is raised
    documented = set(re.findall(r"`(/problems/[a-z-]+)`", GUIDE))
    assert raised <= documented, raised - documented
    assert documented - raised == {"/problems/unauthorized", "/problems/not-ready"}


async def test_example_ids_in_the_guide_exist_in_the_sandbox():
    meters = re.findall(r"\| meter \| `([a-z]+:[0-9a-f-]+)`", GUIDE)
    devices = re.findall(r"\| device \| `([a-z]+:[0-9a-f-]+)`", GUIDE)
    assert meters
    assert devices
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as c,
    ):
        for meter in meters:
            r = await c.get(f"/meters/{meter}")
            assert r.status_code == 200, meter
            assert r.json()["device_id"] in devices
        for device in devices:
            assert (await c.get(f"/devices/{device}/status")).status_code == 200, device


def test_freshness_in_the_guide_is_the_default_configuration():
    s = Settings()
    stated = re.search(r"Freshness: meters (\d+) minutes, device status (\d+) s, the corrections feed (\d+) s", GUIDE)
    assert stated, "the guide's freshness sentence changed: update this test"
    assert (int(stated[1]) * 60, int(stated[2]), int(stated[3])) == (s.ttl_meters, s.ttl_device_status, s.ttl_changes)
    assert re.search(rf"1 h for windows entirely in the past and {int(s.ttl_recent / 60)} min", GUIDE)
    assert s.ttl_past == 3600


def test_the_readme_points_to_the_guide_not_to_files_outside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "docs/api-guide.md" in readme
    assert "../shared" not in readme
    assert "PERF-NOTES" not in readme
    assert "UPSTREAMS.md" not in readme
    assert "jq" in readme
    assert "GNU `date`" in readme
