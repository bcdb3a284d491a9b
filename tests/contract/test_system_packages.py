"""scripts/ensure-system-packages.sh, run against stub tools on a PATH of its own: nothing happens when
every tool is there; as root it runs `apt-get update` once and installs only what is missing, without
recommends; otherwise it prints the exact command and fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ensure-system-packages.sh"
TOOLS = ("redis-server", "chromium", "promtool", "jq", "curl")


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def run(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    return subprocess.run([bash, str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=30)


def test_nothing_to_do_when_every_tool_is_there(tmp_path: Path):
    for tool in TOOLS:
        stub(tmp_path, tool, "exit 0")
    stub(tmp_path, "apt-get", f"echo called >> {tmp_path}/apt.log")
    done = run(tmp_path)
    assert done.returncode == 0
    assert not done.stderr
    assert not (tmp_path / "apt.log").exists()


def test_as_root_installs_only_the_missing_packages_after_one_update(tmp_path: Path):
    stub(tmp_path, "id", "echo 0")
    stub(tmp_path, "jq", "exit 0")
    stub(tmp_path, "curl", "exit 0")
    # the fake apt-get records its arguments and, on install, provides the tools
    provide = " ".join(f"{tmp_path}/{t}" for t in ("redis-server", "chromium", "promtool"))
    chmod = shutil.which("chmod")
    stub(
        tmp_path,
        "apt-get",
        f'echo "$*" >> {tmp_path}/apt.log\n'
        f'case "$1" in install) for t in {provide}; do printf "#!/bin/sh\\n" > $t; {chmod} +x $t; done;; esac',
    )
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls == ["update -qq", "install -y -qq --no-install-recommends redis-server chromium prometheus"]


def test_not_root_prints_the_command_and_fails(tmp_path: Path):
    stub(tmp_path, "id", "echo 1000")
    stub(tmp_path, "jq", "exit 0")
    done = run(tmp_path)
    assert done.returncode != 0
    assert (
        "apt-get update && apt-get install -y --no-install-recommends redis-server chromium prometheus curl"
        in done.stderr
    )


def test_a_failing_apt_prints_the_command_and_fails(tmp_path: Path):
    stub(tmp_path, "id", "echo 0")
    stub(tmp_path, "apt-get", "exit 100")
    done = run(tmp_path)
    assert done.returncode != 0
    assert "apt failed" in done.stderr
    assert "--no-install-recommends redis-server chromium prometheus jq curl" in done.stderr
