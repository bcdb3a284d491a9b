"""Every `curl` line of README.md and docs/api-guide.md, run as written against the sandbox (`make run`'s
service: a real uvicorn on a free port; only the port is rewritten): each request answers 200 and the
line prints data, or the status its own `# 404`-style comment documents.

The lines of one document run in order in one bash, so `M=$(curl ...)` feeds the lines after it. A
`curl` shell function records each response's status line (`-D`) without changing what the line
prints; a stream (`/readings/live`) is read for a few seconds."""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import PYTHON, free_port, serve_process
from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/api-guide.md")
NO_DATA = {"", "[]", "{}", "null", "0"}
_DOCUMENTED_STATUS = re.compile(r"\s#\s*(\d{3})\b")


@dataclass(frozen=True)
class Example:
    doc: str
    line: str

    @property
    def expected(self) -> int:
        """The status a trailing `# 404: ...` comment documents, else 200."""
        found = _DOCUMENTED_STATUS.search(self.line)
        return int(found.group(1)) if found else 200


def examples(doc: str) -> list[Example]:
    """The command lines of the `sh` blocks that run `curl` or set a variable a later `curl` uses."""
    text = (ROOT / doc).read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            if "curl " in line or re.match(r"^[A-Z]+=\S", line):
                lines.append(Example(doc, line))
    return lines


def test_the_docs_have_curl_examples() -> None:
    assert len([e for e in examples("README.md") if "curl " in e.line]) >= 15
    assert len([e for e in examples("docs/api-guide.md") if "curl " in e.line]) >= 7
    assert any(e.expected == 404 for e in examples("docs/api-guide.md"))


@pytest.fixture(scope="module")
def sandbox() -> str:  # type: ignore[misc]
    for tool in ("curl", "jq"):
        require_tool(tool)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [PYTHON, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with serve_process(argv, f"{base}/healthz", env={"FACADE_SANDBOX": "true", "FACADE_CHANGES_POLL": "0"}):
        yield base


def script(lines: list[Example], base: str, work: Path) -> str:
    """One bash script: each line's output, stderr, exit code and response headers into `work`."""
    out = [
        "set -o pipefail",
        f"cd {shlex.quote(str(work))}",
        # each response's status line and headers, however the line calls curl; a stream is cut after 4 s
        'curl() { local args=("$@"); case "$*" in *readings/live*) args=(-m 4 "${args[@]}");; esac; '
        'command curl -D "$(mktemp "$__HDR.XXXXXX")" "${args[@]}"; }',
    ]
    for i, example in enumerate(lines):
        line = re.sub(r"\s+#\s.*$", "", example.line).replace("http://127.0.0.1:8000", base)  # no comment
        assignment = re.match(r"^([A-Z]+)=", line)
        show = f'; printf %s "${assignment.group(1)}"' if assignment else ""
        out.append(f"__HDR={work}/h{i}")  # a name no document uses
        out.append(f"{{ {line}{show} ; }} > {work}/o{i} 2> {work}/e{i}; echo $? > {work}/rc{i}")
    return "\n".join(out) + "\n"


def statuses(work: Path, i: int) -> list[int]:
    found = []
    for header in sorted(work.glob(f"h{i}.*")):
        first = header.read_text(errors="replace").splitlines()[:1]
        if first:
            found.append(int(first[0].split()[1]))
    return found


@pytest.mark.parametrize("doc", DOCS)
def test_every_curl_line_answers_with_data(doc: str, sandbox: str, tmp_path: Path) -> None:
    lines = examples(doc)
    (tmp_path / "run.sh").write_text(script(lines, sandbox, tmp_path))
    done = subprocess.run(["bash", str(tmp_path / "run.sh")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for i, example in enumerate(lines):
        output = (tmp_path / f"o{i}").read_text(errors="replace").strip()
        rc = int((tmp_path / f"rc{i}").read_text())
        seen = statuses(tmp_path, i)
        where = f"{doc}: {example.line}\n-> rc {rc}, statuses {seen}, output {output[:300]!r}"
        if "curl " in example.line:
            assert seen, where
            assert set(seen) == {example.expected}, where
        if "readings/live" in example.line:
            assert rc == 28 and "event: readings" in output, where  # cut by -m after its events
            continue
        assert rc == 0, where + (tmp_path / f"e{i}").read_text()[-500:]
        if "-OJ" in example.line:  # saved to the file the server named
            saved = [p for p in tmp_path.iterdir() if p.suffix == ".csv"]
            assert saved and saved[0].read_text().count("\n") > 1, where
            continue
        assert output not in NO_DATA, where
        if example.expected == 200:
            assert '"type": "/problems/' not in output, where
