"""The operations files are checked like code: the alert rules pass `promtool check rules` and their
own `promtool test rules` cases; every dashboard expression parses (promtool, as recording rules) and,
like every alert, uses only metrics a real scrape of the service exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.factory import create_app
from app.infra.config import Settings
from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "meter-facade.json"
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
NOT_SERVICE_METRICS = {"up"}
"""Prometheus' own series, allowed in alerts only (the scrape itself failing)."""


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, expression with Grafana's variables replaced) for every query of every panel."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, (panel["title"], expr)
            out.append((panel["title"], expr))
    return out


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


_FUNCTIONS_AND_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS_WITH_LABELS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions (followed by
    `(`), keywords, label names (inside `{...}` or `by (...)`), strings, durations or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _KEYWORDS_WITH_LABELS.sub(" ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name in _FUNCTIONS_AND_KEYWORDS or name in ("bool", "inf", "nan", "Inf", "NaN"):
            continue
        names.add(name)
    return names


@pytest.fixture
async def exported() -> set[str]:
    """Every series name the sandbox service exposes on /metrics after some traffic."""
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as c:
            meters = (await c.get("/meters")).json()["items"]
            await c.get("/meters")
            await c.get(f"/meters/{meters[0]['id']}")
            await c.get("/changes", params={"since": "2026-01-01T00:00:00Z"})
            await c.get("/backends")
            text = (await c.get("/metrics")).text
    names = set()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    assert "facade_http_requests_total" in names  # the scrape worked
    return names


def test_metric_name_extraction():
    expr = (
        'histogram_quantile(0.99, sum by (backend, le) (rate(facade_x_bucket{a="b", c=~"d|e"}[5m]))) > 5 '
        "and on (backend) (facade_y - time() < 300) unless max_over_time(facade_z[1h] offset 5m) == bool 2"
    )
    assert metric_names(expr) == {"facade_x_bucket", "facade_y", "facade_z"}


def test_alert_rules_pass_promtool_and_their_unit_tests():
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout
    tested = promtool("test", "rules", "alerts.test.yml", cwd=ALERTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_waits_has_a_severity_and_a_runbook():
    rules = alert_rules()
    assert len(rules) >= 7
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"], rule["alert"]
        assert annotations["description"], rule["alert"]
        assert len(annotations["runbook"]) > 80, rule["alert"]


def test_every_dashboard_expression_parses(tmp_path: Path):
    expressions = dashboard_expressions()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(expressions)],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in checked.stdout
    # and a broken one would not pass
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(a[5m])"}]}]})
    )
    assert promtool("check", "rules", str(path)).returncode != 0


def test_dashboard_and_alerts_use_only_exported_metrics(exported: set[str]):
    used_by_panel = {title: metric_names(expr) for title, expr in dashboard_expressions()}
    for title, names in used_by_panel.items():
        assert names, title
        assert names <= exported, (title, names - exported)
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, (rule["alert"], names - exported)
        assert names <= exported | NOT_SERVICE_METRICS, (rule["alert"], names - exported)
    # what the dashboard must cover
    used = set().union(*used_by_panel.values())
    assert {
        "facade_http_requests_total",
        "facade_http_request_duration_seconds_bucket",
        "facade_cache_lookups_total",
        "facade_upstream_requests_total",
        "facade_upstream_retries_total",
        "facade_upstream_request_duration_seconds_bucket",
        "facade_circuit_state",
        "facade_token_expiry_timestamp_seconds",
    } <= used


def test_the_readme_lists_exactly_the_shipped_alerts():
    readme = (ROOT / "README.md").read_text()
    listed = re.findall(r"^\| `(MeterFacade\w+)` \|.*\| (\d+[smh]) \| (page|ticket) \|$", readme, re.MULTILINE)
    shipped = [(r["alert"], r["for"], r["labels"]["severity"]) for r in alert_rules()]
    assert listed == shipped
