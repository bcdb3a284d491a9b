"""`uvicorn app.main:app` refuses configurations that cannot work, saying what to set."""

import os
import subprocess
import sys


def start(env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))}
    return subprocess.run(
        [sys.executable, "-c", "import app.main"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_backend_and_no_sandbox_refuses():
    done = start({})
    assert done.returncode == 2
    assert "FACADE_SANDBOX=true" in done.stderr
    assert "Traceback" not in done.stderr


def test_live_without_keys_refuses_and_never_prints_the_secret():
    done = start({"WALTERO_USERNAME": "u", "WALTERO_PASSWORD": "hunter2-secret"})
    assert done.returncode == 2
    assert "FACADE_API_KEYS" in done.stderr
    assert "hunter2-secret" not in done.stderr + done.stdout


def test_half_configured_backend_refuses():
    done = start({"IOMETER_PARTNER_ID": "p", "FACADE_ALLOW_ANONYMOUS": "true"})
    assert done.returncode == 2
    assert "IOMETER_PARTNER_SECRET" in done.stderr


def test_an_invalid_value_names_the_variable_without_a_traceback():
    done = start({"FACADE_SANDBOX": "true", "IOMETER_AUTH": "digest"})
    assert done.returncode == 2
    assert "IOMETER_AUTH" in done.stderr
    assert "Traceback" not in done.stderr
