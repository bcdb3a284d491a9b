"""The served process freezes what it built at start-up out of the garbage collector's generations
(`create_app(freeze_gc=True)`, passed by `app.main`), and unfreezes at shutdown; apps built by tests or
other embedders leave the collector alone."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.factory import create_app
from app.infra.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _nothing_frozen_before() -> None:
    """The suite freezes what earlier modules left (`tests/conftest.py`): undone here, so these tests see
    only what the app itself freezes; the next module freezes again."""
    gc.unfreeze()


async def test_a_frozen_app_freezes_while_it_runs_and_unfreezes_after():
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0), freeze_gc=True)
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 10_000  # the modules, the app and its runtime
    assert gc.get_freeze_count() == 0


async def test_by_default_an_app_leaves_the_collector_alone():
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0


def test_the_served_app_freezes():
    script = (
        "import asyncio, gc\n"
        "from app.main import app\n"
        "async def main():\n"
        "    async with app.router.lifespan_context(app):\n"
        "        print(gc.get_freeze_count())\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "FACADE_SANDBOX": "true", "FACADE_CHANGES_POLL": "0", "FACADE_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert int(done.stdout.strip().splitlines()[-1]) > 10_000
