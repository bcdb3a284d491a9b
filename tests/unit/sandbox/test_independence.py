"""The emulators must be able to disagree with the adapters: no sandbox module imports an adapter's
shapes, documents, SDL, paths or the facade's models (they serve JSON written from the vendors' pages)."""

from __future__ import annotations

import ast
from pathlib import Path

import app.sandbox

SANDBOX = Path(app.sandbox.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_sandbox_module_imports_an_adapter_or_the_models() -> None:
    files = sorted(SANDBOX.rglob("*.py"))
    assert len(files) >= 10
    offending = {
        str(path.relative_to(SANDBOX)): sorted(
            m for m in imported_modules(path) if m.startswith(("app.backends", "app.models"))
        )
        for path in files
    }
    assert {name: mods for name, mods in offending.items() if mods} == {}


def test_the_check_would_see_an_adapter_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from app.backends.waltero import shapes\nimport app.models\n", encoding="utf-8")
    assert imported_modules(sample) == {"app.backends.waltero", "app.models"}
