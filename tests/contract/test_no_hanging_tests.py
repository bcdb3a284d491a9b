"""No test can hang: every test has a time limit that fails it (and the run goes on), and no test pages
with an uncapped `while` loop (a paging bug once made one run for 4 minutes and 820 MB)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"

HANGING = """
import asyncio
import time


async def test_async_hangs():
    await asyncio.sleep(3600)


def test_sync_hangs():
    time.sleep(3600)


def test_after_them_still_runs():
    assert True
"""


def test_the_time_limit_is_configured_for_every_test() -> None:
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < int(options["timeout"]) <= 300
    assert options["timeout_method"] == "signal"  # fails the one test; "thread" would end the whole run


def test_a_hanging_test_fails_and_the_run_goes_on(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(HANGING)
    # The project's own configuration (rootdir, asyncio mode, method), with the limit shortened to 2 s.
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml")]
    argv += ["--rootdir", str(tmp_path), "-o", "timeout=2", str(tmp_path / "test_hangs.py")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert out.count("Timeout (>2.0s) from pytest-timeout") >= 2, out
    assert "2 failed, 1 passed" in out, out


def _names(node: ast.AST) -> set[str]:
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            found.add(sub.value)
    return found


def test_no_paging_loop_is_an_uncapped_while() -> None:
    """Paging follows a cursor (or an offset) in `for _ in range(N)` with a failure when N is reached."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.While) and any("cursor" in n or n == "offset" for n in _names(node)):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
