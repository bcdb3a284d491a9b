"""Small truths the README tells a new user, checked against what the repository does."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_make_run_takes_port_and_host_as_the_readme_says():
    makefile = (ROOT / "Makefile").read_text()
    defaults = dict(re.findall(r"^(HOST|PORT)\s*\?=\s*(\S+)$", makefile, re.MULTILINE))
    assert defaults == {"HOST": "127.0.0.1", "PORT": "8000"}
    run = re.search(r"^run:.*\n\t(.+)$", makefile, re.MULTILINE)
    assert run and "--host $(HOST)" in run.group(1) and "--port $(PORT)" in run.group(1)
    assert "make run PORT=" in README and "HOST=" in README
    assert f"`PORT={defaults['PORT']}`" in README and f"`HOST={defaults['HOST']}`" in README


def test_the_readme_does_not_deny_the_streaming_endpoint():
    assert "no streaming endpoint" not in README
    assert "does not use them" not in README
    assert "`GET /readings/live`" in README
