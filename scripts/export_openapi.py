"""Print the app's OpenAPI document (what `make openapi` writes to openapi/openapi.json)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.factory import create_app
from app.infra.config import Settings


def spec_text() -> str:
    # Any valid configuration gives the same spec; this one needs no emulator and no network.
    settings = Settings.model_validate(
        {
            "IOMETER_PARTNER_ID": "x",
            "IOMETER_PARTNER_SECRET": "x",
            "WALTERO_USERNAME": "x",
            "WALTERO_PASSWORD": "x",
            "FACADE_ALLOW_ANONYMOUS": True,
        }
    )
    return json.dumps(create_app(settings).openapi(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(spec_text())
