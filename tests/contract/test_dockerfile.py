"""No Docker engine runs here, so the Dockerfile is linted with hadolint and checked for what the
image must have: a slim base, pinned dependencies, a non-root user, a health check, proxy headers."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    return str(found) if found.exists() else shutil.which("hadolint") or "hadolint"


def test_hadolint_is_clean():
    done = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_essentials():
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "-c requirements.lock" in text
    assert "USER 10001" in text
    assert "useradd" in text
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    assert '"app.main:app"' in text
    assert '"0.0.0.0"' in text
    assert '"--proxy-headers"' in text
    # the files the image copies exist
    for name in ("pyproject.toml", "requirements.lock", "README.md", "app"):
        assert (ROOT / name).exists(), name
