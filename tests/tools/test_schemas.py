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


#: tools/list with every toolset on (and the emulator's simulate_purchase): what a client fetches, and most hosts
#: resend to the model, on every turn. 30 KB for 18 tools is ~1.7 KB a tool: a description a model can act on,
#: an input schema with bounds, an output schema with structure -- not the 75 KB pydantic's raw schemas made.
LIST_BUDGET = 30_000
#: What a model reads of it (names, descriptions, input schemas: hosts rarely show it output schemas).
MODEL_BUDGET = 16_000


def _size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


async def test_tools_list_fits_its_budget(make_server: ServerFactory) -> None:
    """The whole tools/list result, as the official client receives it, stays within LIST_BUDGET bytes; the
    part a model reads within MODEL_BUDGET."""
    async with Client(make_server()) as c:
        listed = (await c.list_tools()).tools
    assert len(listed) == 18  # every tool: no toolset left out of the measure
    wire = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed]
    assert _size({"tools": wire}) <= LIST_BUDGET, (_size({"tools": wire}), {t["name"]: _size(t) for t in wire})
    read = [{"name": t["name"], "description": t["description"], "inputSchema": t["inputSchema"]} for t in wire]
    assert _size(read) <= MODEL_BUDGET, {t["name"]: _size(t) for t in read}


async def test_schemas_say_once_what_they_used_to_repeat(make_server: ServerFactory) -> None:
    """No pydantic titles, no anyOf-with-null, no null defaults; output schemas are shapes (meanings are in the
    descriptions a model reads), and a card nested in a result is one sentence naming get_card."""
    async with Client(make_server()) as c:
        listed = (await c.list_tools()).tools
    tools = {t.name: t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed}
    text = json.dumps([[t["inputSchema"], t["outputSchema"]] for t in tools.values()])
    assert '"title": ' not in text and '{"type": "null"}' not in text and '"default": null' not in text
    outputs = json.dumps([t["outputSchema"] for t in tools.values()])
    assert '"required"' not in outputs and '"additionalProperties"' not in outputs
    issued = tools["issue_card"]["outputSchema"]
    assert "$defs" not in issued
    assert issued["properties"]["card"] == {
        "type": ["object", "null"],
        "description": "a card: the fields get_card returns",
    }
    assert set(tools["get_card"]["outputSchema"]["properties"]) >= {"card_status", "reveal_url", "frozen_by"}
    assert tools["get_request_status"]["outputSchema"]["properties"]["result"]["type"] == ["object", "null"]
    assert tools["issue_card"]["inputSchema"]["properties"]["currency"]["default"] == "USD"
