"""Per-agent rate limits, read-only mode and toolsets: removed tools are never registered."""

from __future__ import annotations

import re

import pytest
from mcp import Client

from helpers import ServerFactory, call, error_text, refuse

pytestmark = pytest.mark.anyio


async def test_rate_limit_refuses_past_the_budget_with_retry_after(make_server: ServerFactory) -> None:
    """With 3 calls a minute the 4th is [rate_limited] with a retry time, and costs no upstream call."""
    async with Client(make_server(rate_limit_per_minute=3)) as c:
        for _ in range(3):
            await call(c, "get_spend_status", {})
        result = await c.call_tool("get_balance", {})
    text = error_text(result)
    assert text.startswith("[rate_limited]")
    retry = re.search(r"retry in (\d+) s", text)
    assert retry is not None and int(retry.group(1)) > 0, text


async def test_read_only_mode_registers_only_read_only_tools(make_server: ServerFactory) -> None:
    """--read-only: no money or state-changing tool exists, so calling one is an unknown tool."""
    async with Client(make_server(read_only=True)) as c:
        tools = (await c.list_tools()).tools
        text = await refuse(c, "issue_card", {"amount": "1.00", "request_id": "r"})
    assert tools and all(t.annotations and t.annotations.read_only_hint for t in tools)
    assert {t.name for t in tools} >= {"get_card", "list_cards", "get_spend_status"}
    assert "issue_card" in text and "Unknown tool" in text


async def test_toolsets_select_what_is_registered(make_server: ServerFactory) -> None:
    """--toolsets spend,account registers only those toolsets' tools."""
    async with Client(make_server(toolsets="spend,account")) as c:
        names = {t.name for t in (await c.list_tools()).tools}
    assert names == {"get_spend_status", "get_balance", "get_request_status"}


def test_unknown_toolset_stops_startup(make_server: ServerFactory) -> None:
    """A typo in INTERLACE_TOOLSETS fails at startup naming the known toolsets."""
    with pytest.raises(ValueError, match="unknown toolset"):
        make_server(toolsets="cards,paymnets")
