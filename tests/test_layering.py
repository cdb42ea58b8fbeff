"""The layering holds: no import runs upward or in a circle, no package reaches into another's private modules.

Ground up (DESIGN section 13, "Money path"): ``money``, logging, ``metrics`` -> ``client``, ``policy``, ``sandbox`` ->
``audit``, ``config`` -> ``operations`` -> ``app`` -> ``tools`` -> ``dashboard`` -> ``server`` -> ``cli``.
Every import in ``src/`` is read from the source (also those inside functions and under TYPE_CHECKING).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "interlace_mcp"

#: Each unit (a subpackage, or a module at the package's root) and its floor.
RANKS = {
    "interlace_mcp": 0,  # the root package itself: __version__
    "money": 0,
    "_logging": 0,
    "_crash": 0,
    "metrics": 0,  # Prometheus metrics: imports nothing of ours
    "client": 1,
    "policy": 1,
    "sandbox": 1,
    "audit": 2,
    "config": 2,
    "operations": 3,
    "app": 4,
    "tools": 5,
    "dashboard": 6,
    "server": 7,
    "cli": 8,
    "__main__": 9,
}
#: Units that must never import the MCP SDK (the protocol lives in tools/ and above).
NO_MCP = {
    "money",
    "_logging",
    "_crash",
    "metrics",
    "client",
    "policy",
    "sandbox",
    "audit",
    "config",
    "operations",
    "app",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(module: str, is_package: bool, text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, names) for every import in a module's source, relative ones resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target, [alias.name for alias in node.names]


def _sources() -> list[tuple[str, bool, str]]:
    """(module, is a package, source) of every module in src/."""
    return [
        (_module_name(path), path.name == "__init__.py", path.read_text(encoding="utf-8"))
        for path in sorted(SRC.rglob("*.py"))
    ]


def _problems(sources: list[tuple[str, bool, str]]) -> list[str]:
    problems: list[str] = []
    for importer, is_package, text in sources:
        unit = _unit(importer)
        assert unit in RANKS, f"{importer}: unit {unit!r} has no place in the layering (add it to RANKS)"
        for line, target, names in _imports(importer, is_package, text):
            where = f"{importer}:{line}"
            top = target.split(".")[0]
            if top in ("mcp", "mcp_types") and unit in NO_MCP:
                problems.append(f"{where}: {unit} imports the MCP SDK ({target})")
            if top != "interlace_mcp":
                continue
            targets = [target] + [f"{target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
            for full in targets:
                other = _unit(full)
                if other == unit:
                    continue
                private = [p for p in full.split(".")[2:] if p.startswith("_") and not p.startswith("__")]
                if private:
                    problems.append(f"{where}: {unit} imports {full}, a private module of {other}")
                elif RANKS[other] > RANKS[unit] and full == target:
                    problems.append(f"{where}: {unit} (floor {RANKS[unit]}) imports {full} (floor {RANKS[other]})")
    return problems


def test_no_import_runs_upward_reaches_into_a_private_module_or_pulls_mcp_below_the_tools() -> None:
    """Every import in src/ goes down (or sideways within its unit), through public names only."""
    assert _problems(_sources()) == []


def test_no_two_packages_import_each_other() -> None:
    """The unit graph has no cycle (server and dashboard, for one, no longer import each other)."""
    graph: dict[str, set[str]] = {}
    for module, is_package, text in _sources():
        unit = _unit(module)
        for _, target, _names in _imports(module, is_package, text):
            if target.split(".")[0] == "interlace_mcp" and _unit(target) != unit:
                graph.setdefault(unit, set()).add(_unit(target))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    circles = sorted(unit for unit in graph if reaches(unit, unit, {unit}))
    assert circles == []


PLANTED = {
    "an upward import": ("interlace_mcp.policy._planted", "from interlace_mcp.server import build_server\n"),
    "a private module": ("interlace_mcp.tools._planted", "from interlace_mcp.audit._log import AuditLog\n"),
    "a relative private": ("interlace_mcp.tools._planted", "from ..operations import _runner\n"),
    "mcp below the tools": ("interlace_mcp.operations._planted", "from mcp.server import MCPServer\n"),
}


@pytest.mark.parametrize("offender", list(PLANTED))
def test_the_layering_check_itself_finds_each_kind_of_breach(offender: str) -> None:
    """The check is not vacuous: a planted upward, private or MCP import is reported, exactly once."""
    module, text = PLANTED[offender]
    problems = _problems([(module, False, text)])
    assert len(problems) == 1, problems
