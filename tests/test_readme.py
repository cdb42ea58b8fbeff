"""README stays true: its tool table is the registry's, and it documents every setting and tool."""

from __future__ import annotations

from pathlib import Path

from interlace_mcp.config import Settings
from interlace_mcp.tools import SPECS, readme_table

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def test_readme_tool_table_matches_the_registry() -> None:
    """The table between the tools markers equals readme_table() (regenerate it from there)."""
    text = README.read_text(encoding="utf-8")
    table = _section(text, "<!-- tools:start -->", "<!-- tools:end -->")
    assert table == readme_table(), "README tool table is stale; paste readme_table() output"


def test_readme_documents_every_setting() -> None:
    """Every Settings field appears as INTERLACE_<NAME> in README."""
    text = README.read_text(encoding="utf-8")
    missing = [f"INTERLACE_{name.upper()}" for name in Settings.model_fields if f"INTERLACE_{name.upper()}" not in text]
    assert missing == []


def test_env_example_lists_every_setting() -> None:
    """.env.example names every setting too."""
    text = (README.parent / ".env.example").read_text(encoding="utf-8")
    names = [f"INTERLACE_{name.upper()}" for name in Settings.model_fields]
    missing = [name for name in names if f"{name}=" not in text]
    assert missing == []


def test_readme_names_every_tool_once_in_the_table() -> None:
    """Each registered tool has exactly one table row."""
    table = readme_table()
    for spec in SPECS:
        assert table.count(f"| `{spec.name}`") == 1
