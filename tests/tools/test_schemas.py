"""Tool schema snapshots: any change to a tool's name, description, schemas or annotations shows in review.

Run with UPDATE_TOOLSNAPS=1 to rewrite tests/__toolsnaps__/ after a deliberate change.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest
from mcp import Client

from helpers import ServerFactory

pytestmark = pytest.mark.anyio
SNAPS = Path(__file__).resolve().parents[1] / "__toolsnaps__"


async def _tools(make_server: ServerFactory) -> dict[str, dict[str, object]]:
    async with Client(make_server()) as c:
        listed = (await c.list_tools()).tools
    return {t.name: t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed}


async def test_tool_schemas_match_their_snapshots(make_server: ServerFactory) -> None:
    """Each tool's wire definition equals tests/__toolsnaps__/<name>.json."""
    tools = await _tools(make_server)
    if os.environ.get("UPDATE_TOOLSNAPS") == "1":
        SNAPS.mkdir(exist_ok=True)
        for name, definition in tools.items():
            (SNAPS / f"{name}.json").write_text(
                json.dumps(definition, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
    stored = {p.stem for p in SNAPS.glob("*.json")}
    assert stored == set(tools), "tools added or removed: run with UPDATE_TOOLSNAPS=1"
    for name, definition in tools.items():
        expected = json.loads((SNAPS / f"{name}.json").read_text(encoding="utf-8"))
        assert definition == expected, f"{name} changed: review, then UPDATE_TOOLSNAPS=1"


async def test_tool_metadata_has_no_hidden_characters(make_server: ServerFactory) -> None:
    """No control, zero-width, bidi or tag characters anywhere in names, descriptions or schemas."""
    tools = await _tools(make_server)
    text = json.dumps(tools, ensure_ascii=False)
    bad = [ch for ch in text if unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\n\t"]
    assert bad == []


async def test_tool_list_is_identical_across_servers(make_server: ServerFactory) -> None:
    """tools/list is deterministic (same order and content from a fresh server)."""
    assert list((await _tools(make_server)).items()) == list((await _tools(make_server)).items())
