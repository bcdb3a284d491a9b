"""`uvicorn app.main:app`: the service configured from the environment.

A configuration that cannot work stops the process here with a message saying what to set, rather
than starting a service that fails on every request.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from app.config import Settings
from app.errors import ConfigurationError
from app.factory import FacadeApp, create_app
from app.logs import configure_logging


def _build() -> FacadeApp:
    try:
        settings = Settings()
    except ValidationError as exc:  # e.g. IOMETER_AUTH=digest: say which variable, not a traceback
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"meter-facade cannot start: invalid configuration ({problems}).", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        configure_logging(settings.log_level, settings.secrets())
        return create_app(settings)
    except ConfigurationError as exc:
        print(f"meter-facade cannot start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


app = _build()
