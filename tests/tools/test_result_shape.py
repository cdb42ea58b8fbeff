"""Issue 12, item 6: every tool result's times are ISO 8601 UTC, and its text content is the structured result
without null fields -- checked over every result a flow through all the tools produces, in both eras."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent
from starlette.applications import Starlette

from helpers import Clock, ServerFactory
from interlace_mcp.sandbox import create_sandbox_app

pytestmark = pytest.mark.anyio
MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])

POLICY = """\
[defaults]
per_transaction = "100.00"
daily = "500.00"
approval_above = "60.00"
fund_daily = "100.00"
transfer_payees = ["sandbox-payee"]
"""
ISO_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")


@pytest.fixture
def sandbox_app(clock: Clock) -> Starlette:
    """The emulator on the ledger's clock (a 3-D Secure code it notifies is still valid when read)."""
    return create_sandbox_app(clock=clock)


class Recorder:
    """Calls tools and keeps every result."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.results: list[tuple[str, CallToolResult]] = []

    async def __call__(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args)
        self.results.append((tool, result))
        assert not result.is_error, (tool, result.content)
        assert result.structured_content is not None
        return result.structured_content


def time_fields(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (path, value) whose name says it is a time (``*_at``, ``*time*``), anywhere in a result."""
    found: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}.{key}"
            if key.endswith("_at") or "time" in key:
                found.append((where, inner))
            found += time_fields(inner, where)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += time_fields(inner, f"{path}[{i}]")
    return found


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


async def run_every_tool(call: Recorder) -> None:
    issued = await call("issue_card", {"amount": "30.00", "request_id": "c-1", "expires_in_minutes": 120})
    card_id = issued["card"]["card_id"]
    await call("issue_card", {"amount": "5.00", "request_id": "c-dry", "dry_run": True})
    await call("top_up_card", {"card_id": card_id, "amount": "5.00", "request_id": "t-1"})
    await call("get_card", {"card_id": card_id})
    await call("list_cards", {})
    await call("simulate_purchase", {"card_id": card_id, "amount": "2.00", "merchant": "Books"})
    await call("simulate_purchase", {"card_id": card_id, "amount": "900.00", "merchant": "Too much"})  # declined
    await call("simulate_purchase", {"card_id": card_id, "amount": "1.00", "merchant": "Shop", "three_ds": True})
    await call("get_3ds_code", {"card_id": card_id})
    await call("get_card_transactions", {"card_id": card_id})
    await call("freeze_card", {"card_id": card_id})
    await call("unfreeze_card", {"card_id": card_id})
    await call("withdraw_from_card", {"card_id": card_id, "amount": "1.00", "request_id": "w-1"})
    await call("list_payees", {})
    await call("create_transfer", {"payee": "sandbox-payee", "amount": "3.00", "request_id": "p-1"})
    await call("create_transfer", {"payee": "sandbox-payee", "amount": "70.00", "request_id": "p-big"})  # pending
    await call("get_request_status", {"request_id": "p-1"})
    await call("get_request_status", {"request_id": "p-big"})
    await call("get_balance", {})
    await call("get_deposit_address", {})
    await call("fund_account", {"amount": "5.00", "request_id": "f-1"})
    await call("get_spend_status", {})
    await call("close_card", {"card_id": card_id, "request_id": "x-1"})


@MODES
async def test_every_result_has_iso_utc_times_and_text_without_nulls(make_server: ServerFactory, mode: str) -> None:
    """Every tool, through the official client: each time field is ``YYYY-MM-DDTHH:MM:SSZ`` (transactions'
    ``created_at`` included, which Interlace sends as epoch milliseconds); the text content is the structured
    content, null fields dropped (at every depth), and never says ``null``; the structured content keeps them."""
    async with Client(make_server(policy=POLICY), mode=mode) as c:
        call = Recorder(c)
        await run_every_tool(call)
    tools = {tool for tool, _ in call.results}
    assert len(tools) == 18, sorted(tools)
    seen_times: set[str] = set()
    for tool, result in call.results:
        structured = result.structured_content
        assert structured is not None
        for where, value in time_fields(structured):
            if value is None:
                continue
            assert isinstance(value, str) and ISO_UTC.fullmatch(value), (tool, where, value)
            seen_times.add(re.sub(r"\[[0-9]+\]", "[]", where))
        assert len(result.content) == 1 and isinstance(result.content[0], TextContent), (tool, result.content)
        text = result.content[0].text
        assert "null" not in text, (tool, text)
        assert json.loads(text) == without_nulls(structured), tool
    assert any(None in d.values() for _, r in call.results for d in [r.structured_content or {}])  # kept there
    # The flow produced each kind of time, so the check above covered them.
    for where in (".transactions[].created_at", ".expires_at", ".card.expires_at", ".windows[].resets_at"):
        assert where in seen_times, sorted(seen_times)
