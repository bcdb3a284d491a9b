"""The layout is a rule, not a habit: each package imports only from its own level or below; a vendor
package is reached only through the registry; an emulator imports nothing of its adapter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import app

APP = Path(app.__file__).parent

# Lowest first. A module's level is the level of the longest prefix listed here.
LEVELS: dict[str, int] = {
    "app.infra": 0,
    "app.domain": 1,
    "app.shared": 1,
    "app.sandbox": 1,
    "app.backends": 2,
    "app.doctor": 2,
    "app.guard": 3,
    "app.core": 4,
    "app.live": 4,
    "app.api": 5,
    "app.factory": 6,
    "app.runtime": 6,
    "app.main": 6,
}
VENDORS = sorted(p.name for p in (APP / "backends").iterdir() if (p / "__init__.py").exists())


def module_name(path: Path) -> str:
    parts = list(path.relative_to(APP.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, roots: tuple[str, ...] = ("app",)) -> set[str]:
    """Every module under `roots` that `path` imports at any depth (`from a import b` counts as `a` and
    `a.b`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if any(m == r or m.startswith(r + ".") for r in roots)}


def level_of(module: str) -> int | None:
    best = max((p for p in LEVELS if module == p or module.startswith(p + ".")), key=len, default=None)
    return None if best is None else LEVELS[best]


MODULES = {module_name(p): p for p in APP.rglob("*.py") if "__pycache__" not in p.parts}


def test_every_module_has_a_level() -> None:
    assert sorted(m for m in MODULES if m != "app" and level_of(m) is None) == []


def test_no_package_imports_from_a_level_above_its_own() -> None:
    upward = sorted(
        f"{name} ({level_of(name)}) imports {target} ({level_of(target)})"
        for name, path in MODULES.items()
        for target in imports_of(path)
        if target in MODULES and (level_of(target) or 0) > (level_of(name) or 0)
    )
    assert upward == []


@pytest.mark.parametrize("vendor", VENDORS)
def test_nothing_outside_a_vendor_package_imports_it(vendor: str) -> None:
    inside = f"app.backends.{vendor}"
    outside = sorted(
        f"{name} imports {target}"
        for name, path in MODULES.items()
        if not (name == inside or name.startswith(inside + "."))
        for target in imports_of(path)
        if target == inside or target.startswith(inside + ".")
    )
    assert outside == []


@pytest.mark.parametrize("vendor", VENDORS)
def test_an_emulator_imports_nothing_of_its_adapter(vendor: str) -> None:
    """An emulator is its own reading of the vendor's documents: it may use the vendor-neutral harness
    (`app.sandbox`) and time helpers, never the adapter's shapes, documents, SDL or the facade's models."""
    emulator = f"app.backends.{vendor}.emulator"
    files = [p for n, p in MODULES.items() if n == emulator or n.startswith(emulator + ".")]
    assert len(files) >= 3
    allowed = ("app.sandbox", "app.infra.timeutil", emulator)
    offending = sorted(
        f"{module_name(path)} imports {target}"
        for path in files
        for target in imports_of(path)
        if target != "app" and not any(target == a or target.startswith(a + ".") for a in allowed)
    )
    assert offending == []


def test_the_check_sees_imports_at_any_depth(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from app.backends import waltero\nimport app.domain.models\n", encoding="utf-8")
    assert imports_of(sample) == {"app.backends", "app.backends.waltero", "app.domain.models"}
