"""One version: `pyproject.toml`'s, read through the package metadata by the API and the spec."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from app import __version__
from app.factory import create_app
from app.infra.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_api_and_the_checked_in_spec_carry_pyprojects_version():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == declared
    app = create_app(Settings(FACADE_SANDBOX=True))
    assert app.openapi()["info"]["version"] == declared
    assert json.loads((ROOT / "openapi" / "openapi.json").read_text())["info"]["version"] == declared
    tags = {t["name"]: t["description"] for t in app.openapi()["tags"]}
    assert "Daily" not in tags["consumption"] and "hour" in tags["consumption"]
