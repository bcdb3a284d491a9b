"""No Docker engine runs here, so the Dockerfile is linted with hadolint and checked for what the
image must have: a slim base, pinned dependencies, a non-root user, a health check, proxy headers."""

import os
import re
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


# --- the build context: .dockerignore -------------------------------------------------------------


def _pattern(line: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it (Go `filepath.Match` plus `**`), matching a path or
    anything below it."""
    out, i = "", 0
    text = line.strip("/")
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(f"^{out}(?:/.*)?$")


def _rules() -> list[tuple[bool, re.Pattern[str], str]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        rules.append((keep, _pattern(line.removeprefix("!")), line.removeprefix("!").strip("/")))
    return rules


def _excluded(path: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    excluded = False
    for keep, pattern, _ in rules:  # the last matching rule wins
        if pattern.match(path):
            excluded = not keep
    return excluded


def build_context() -> list[str]:
    """Every file `docker build .` would send, by the repository's .dockerignore."""
    rules = _rules()
    reincluded = [text for keep, _, text in rules if keep]
    sent = []
    for directory, dirs, files in os.walk(ROOT):
        rel = os.path.relpath(directory, ROOT)
        base = "" if rel == "." else rel + "/"
        # an excluded directory no exception reaches into is not walked (.venv, .git)
        dirs[:] = [
            d for d in dirs if not _excluded(base + d, rules) or any(r.startswith(base + d + "/") for r in reincluded)
        ]
        sent.extend(base + f for f in files if not _excluded(base + f, rules))
    return sent


def test_the_build_context_is_what_the_image_copies_and_nothing_else():
    sent = build_context()
    assert {
        "pyproject.toml",
        "requirements.lock",
        "README.md",
        "app/main.py",
        "app/static/redoc/redoc.standalone.js",
    } <= set(sent)
    for path in sent:
        top = path.split("/")[0]
        assert top in {"pyproject.toml", "requirements.lock", "README.md", "app"}, path
        assert "__pycache__" not in path and not path.endswith(".pyc"), path
        assert not any(cache in path for cache in (".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis")), path
    size = sum((ROOT / p).stat().st_size for p in sent)
    assert size < 20 * 1024 * 1024, size  # the vendored UIs are the bulk; .venv alone is hundreds of MB
    # and the matcher itself: what it must exclude, even when present
    rules = _rules()
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "app/__pycache__/x.pyc",
        "deploy/facade.env",
        "bench/results.json",
        "meter_facade.egg-info/PKG-INFO",
        ".pytest_cache/v/x",
        "app/.mypy_cache/x",
    ):
        assert _excluded(path, rules), path
    assert not _excluded("app/api/routes/meters.py", rules)
