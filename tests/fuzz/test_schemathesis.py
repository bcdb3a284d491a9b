"""Property-based fuzzing of the running sandbox facade from openapi/openapi.json (schemathesis).

Every operation gets valid and invalid inputs; each answer must be a non-5xx, conform to the schema
(status, content type, body), and every error must be `application/problem+json`. Bounded and
deterministic: a fixed number of examples per operation, derandomized.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from app.factory import create_app
from app.infra.config import Settings
from tests.support.servers import serve_in_thread

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
KEY = "fuzz-key-0123456789"
config = SchemathesisConfig.from_dict(
    {"generation": {"mode": "all", "max-examples": 40, "deterministic": True}, "headers": {"X-API-Key": KEY}}
)
schema = schemathesis.openapi.from_path(str(SPEC), config=config)


@pytest.fixture(scope="module")
def facade_url() -> Iterator[str]:
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0, FACADE_API_KEYS=KEY))
    with serve_in_thread(app) as url:
        yield url


@schemathesis.check
def no_server_error_but_documented_501(ctx, response, case):  # type: ignore[no-untyped-def]
    """No 5xx, except the 501 CONTRACT.md prescribes for an operation a backend lacks
    (`/changes?backend=iometer`)."""
    if response.status_code >= 500:
        body = response.json()
        assert response.status_code == 501, f"{response.status_code}: {body}"
        assert body.get("type") == "/problems/not-supported", f"{response.status_code}: {body}"


@schemathesis.check
def errors_are_problem_json(ctx, response, case):  # type: ignore[no-untyped-def]
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])
        value = content_type[0] if isinstance(content_type, list) else content_type
        assert value.startswith("application/problem+json"), f"{response.status_code} answered as {value!r}"
        body = response.json()
        assert {"type", "title", "status", "detail"} <= set(body), body
        assert body["status"] == response.status_code


# The live stream never ends, so a case would only time out: its inputs are fuzzed by
# tests/fuzz/test_properties.py (which reads just the status and headers), its stream by tests/*/live.
@schema.exclude(path="/readings/live").parametrize()
@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_survives_fuzzing(case, facade_url):  # type: ignore[no-untyped-def]
    # Left out, with reasons: `positive_data_acceptance` - the API rightly refuses schema-valid values
    # the schema cannot express (a forged opaque cursor, `end` before `start`, an unknown time zone);
    # `ignored_auth` - it spoils one of the two key headers while the other still carries a valid key,
    # which the API rightly accepts (auth is covered by tests/integration/test_api_with_fakes.py);
    # `not_a_server_error` - replaced by `no_server_error_but_documented_501`.
    case.call_and_validate(
        base_url=facade_url,
        headers={"X-API-Key": KEY},
        timeout=30,
        excluded_checks=[positive_data_acceptance, ignored_auth, not_a_server_error],
        additional_checks=[no_server_error_but_documented_501, errors_are_problem_json],
    )
