"""System tools the tests drive. A missing one fails the test naming its Debian package (never a skip):
`make test` installs them with `scripts/ensure-system-packages.sh`."""

from __future__ import annotations

import shutil

import pytest

DEBIAN_PACKAGE = {
    "redis-server": "redis-server",
    "chromium": "chromium",
    "promtool": "prometheus",
    "jq": "jq",
    "curl": "curl",
}


def require_tool(name: str) -> str:
    """The tool's path; fails the calling test with what to install when it is missing."""
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGE.get(name, name)
        pytest.fail(
            f"'{name}' is not installed: run `make test` (scripts/ensure-system-packages.sh installs it) "
            f"or `apt-get install --no-install-recommends {package}`",
            pytrace=False,
        )
    return path
