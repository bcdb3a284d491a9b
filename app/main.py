"""`uvicorn app.main:app`: the service configured from the environment.

A configuration that cannot work stops the process here with a message saying what to set, rather
than starting a service that fails on every request.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

from pydantic import ValidationError

from app.api.middleware.header_limit import HeaderLimitedHttpToolsProtocol
from app.backends.registry import all_secrets
from app.factory import FacadeApp, create_app
from app.infra.config import Settings
from app.infra.errors import ConfigurationError
from app.infra.logs import JsonFormatter, configure_logging


def _refuse(message: str) -> NoReturn:
    """Stop with exit code 2 and one JSON line saying why (the logs have one format, even this one)."""
    record = logging.LogRecord("app", logging.CRITICAL, __file__, 0, message, None, None)
    print(JsonFormatter().format(record), file=sys.stderr)
    raise SystemExit(2)


def _build() -> FacadeApp:
    try:
        settings = Settings()
    except ValidationError as exc:  # e.g. FACADE_MAX_GAP=soon: say which variable, not a traceback
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _refuse(f"meter-facade cannot start: invalid configuration ({problems}).")
    try:
        configure_logging(settings.log_level, all_secrets(settings))
        # the server loop's own bound (uvicorn `--http app.api.middleware.header_limit:HeaderLimitedHttpToolsProtocol`)
        HeaderLimitedHttpToolsProtocol.max_head_bytes = settings.max_header_bytes
        return create_app(settings, freeze_gc=True)  # the served process: see `create_app`
    except ConfigurationError as exc:
        _refuse(f"meter-facade cannot start: {exc}")


app = _build()
