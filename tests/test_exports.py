"""Each package's public surface is its ``__all__``: every listed name exists, and every name another package
(or a test, or a benchmark) imports from it is listed."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["client", "policy", "sandbox", "audit", "operations", "app", "tools", "dashboard", "server"]


def _imported_names(package: str) -> dict[str, list[str]]:
    """name -> where it is imported from ``interlace_mcp.<package>`` by code outside that package."""
    used: dict[str, list[str]] = {}
    own = ROOT / "src" / "interlace_mcp" / package
    for path in [
        *ROOT.joinpath("src").rglob("*.py"),
        *ROOT.joinpath("tests").rglob("*.py"),
        *ROOT.joinpath("bench").rglob("*.py"),
    ]:
        if own in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == f"interlace_mcp.{package}":
                for alias in node.names:
                    used.setdefault(alias.name, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return used


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_exists(package: str) -> None:
    """``__all__`` lists only names the package really has (no stale exports)."""
    module = importlib.import_module(f"interlace_mcp.{package}")
    exported = module.__all__
    assert len(exported) == len(set(exported))
    assert [name for name in exported if not hasattr(module, name)] == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_used_from_outside_is_exported(package: str) -> None:
    """Whatever others import from a package is in its ``__all__`` (its public surface is stated, and tested)."""
    module = importlib.import_module(f"interlace_mcp.{package}")
    missing = {name: where for name, where in _imported_names(package).items() if name not in module.__all__}
    assert missing == {}
