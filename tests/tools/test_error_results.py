"""Error results show their text in every client: none carries structured content its tool's schema rejects.

Strict clients (the MCP Inspector) validate any ``structuredContent`` against the tool's ``outputSchema``;
a refusal shaped differently from a result showed as a schema error instead of ``[code] ...``. Each
kind of refusal is checked against each tool's advertised schema.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from mcp import Client
from mcp.types import CallToolResult, Tool

from helpers import ServerFactory, call, runtime, sandbox_of

pytestmark = pytest.mark.anyio

TOOLS = (
    "issue_card",
    "top_up_card",
    "get_card",
    "list_cards",
    "get_card_transactions",
    "freeze_card",
    "unfreeze_card",
    "close_card",
    "withdraw_from_card",
    "create_transfer",
    "list_payees",
    "get_balance",
    "get_request_status",
    "get_spend_status",
    "simulate_purchase",
    "get_3ds_code",
    "get_deposit_address",
    "fund_account",
)
#: Tools that only read our own database: they cannot fail upstream.
LOCAL_ONLY = {"list_payees", "get_request_status", "get_spend_status", "get_3ds_code"}


def valid_args(tool: str, card_id: str) -> dict[str, Any]:
    """Arguments that pass validation (the card exists and belongs to the agent)."""
    return {
        "issue_card": {"amount": "1.00", "request_id": "e-issue"},
        "top_up_card": {"card_id": card_id, "amount": "1.00", "request_id": "e-top"},
        "get_card": {"card_id": card_id},
        "list_cards": {},
        "get_card_transactions": {"card_id": card_id},
        "freeze_card": {"card_id": card_id},
        "unfreeze_card": {"card_id": card_id},
        "close_card": {"card_id": card_id, "request_id": "e-close"},
        "withdraw_from_card": {"card_id": card_id, "amount": "1.00", "request_id": "e-withdraw"},
        "create_transfer": {"payee": "sandbox-payee", "amount": "1.00", "request_id": "e-transfer"},
        "list_payees": {},
        "get_balance": {},
        "get_request_status": {"request_id": "e-status"},
        "get_spend_status": {},
        "simulate_purchase": {"card_id": card_id, "amount": "1.00"},
        "get_3ds_code": {"card_id": card_id},
        "get_deposit_address": {"currency": "USDC", "chain": "ETH"},
        "fund_account": {"amount": "1.00", "request_id": "e-fund"},
    }[tool]


def assert_shown_by_strict_clients(result: CallToolResult, tool: Tool, code: str) -> None:
    """An error whose text starts with [code] and whose structured content (if any) fits the output schema."""
    assert result.is_error, result
    wire = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    text = wire["content"][0]["text"]
    assert text.startswith(f"[{code}] "), text
    if "structuredContent" in wire:
        assert tool.output_schema is not None
        jsonschema.validate(wire["structuredContent"], tool.output_schema)


async def _listed(c: Client) -> dict[str, Tool]:
    return {t.name: t for t in (await c.list_tools()).tools}


async def test_every_tool_is_covered() -> None:
    """The list above names every tool in the registry (a new tool gets its error results checked too)."""
    from interlace_mcp.tools._registry import SPECS

    assert set(TOOLS) == {spec.name for spec in SPECS}


@pytest.mark.parametrize("tool", TOOLS)
async def test_validation_errors_are_text_only_for_every_tool(make_server: ServerFactory, tool: str) -> None:
    """[validation_error] from the middleware (an unknown argument) fits the tool's schema rules."""
    async with Client(make_server()) as c:
        listed = await _listed(c)
        result = await c.call_tool(tool, {**valid_args(tool, "c-1"), "bogus": 1})
    assert_shown_by_strict_clients(result, listed[tool], "validation_error")


@pytest.mark.parametrize("tool", TOOLS)
async def test_policy_refusals_are_text_only_for_every_tool(make_server: ServerFactory, tool: str) -> None:
    """[tool_not_allowed] from the policy's tools allow-list fits the tool's schema rules."""
    others = [name for name in TOOLS if name != tool]
    policy = "[defaults]\ntools = [" + ", ".join(f'"{name}"' for name in others) + "]\n"
    async with Client(make_server(policy=policy)) as c:
        listed = await _listed(c)
        result = await c.call_tool(tool, valid_args(tool, "c-1"))
    assert_shown_by_strict_clients(result, listed[tool], "tool_not_allowed")


async def test_money_limit_refusals_are_text_only(make_server: ServerFactory) -> None:
    """[per_transaction_limit] (several rules in one refusal) fits every money tool's schema rules."""
    server = make_server(policy='[defaults]\nper_transaction = "5.00"\n')
    async with Client(server) as c:
        listed = await _listed(c)
        card_id = (await call(c, "issue_card", {"amount": "2.00", "request_id": "setup"}))["card"]["card_id"]
        for tool in ("issue_card", "top_up_card", "create_transfer"):
            result = await c.call_tool(tool, {**valid_args(tool, card_id), "amount": "6.00"})
            assert_shown_by_strict_clients(result, listed[tool], "per_transaction_limit")


CARD_OR_REQUEST = [t for t in TOOLS if "card_id" in valid_args(t, "x") or t == "get_request_status"]


@pytest.mark.parametrize("tool", CARD_OR_REQUEST)
async def test_not_found_refusals_are_text_only(make_server: ServerFactory, tool: str) -> None:
    """[not_found] (another agent's or no such card / request) fits the tool's schema rules."""
    async with Client(make_server()) as c:
        listed = await _listed(c)
        result = await c.call_tool(tool, valid_args(tool, "no-such-card"))
    assert_shown_by_strict_clients(result, listed[tool], "not_found")


@pytest.mark.parametrize("tool", [t for t in TOOLS if t not in LOCAL_ONLY])
async def test_upstream_errors_are_text_only(make_server: ServerFactory, sandbox_app: Any, tool: str) -> None:
    """[upstream_error] (Interlace keeps rate-limiting this server: nothing moved) fits the tool's schema rules."""
    # Funding is off by default ([fund_limit] before any upstream call): grant it to reach Interlace.
    server = make_server(policy='[defaults]\nfund_daily = "10.00"\n' if tool == "fund_account" else None)
    async with Client(server) as c:
        listed = await _listed(c)
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "setup"}))["card"]["card_id"]
        # Every call needs a new token, and Interlace rate-limits the authorization: a definite failure.
        sandbox = sandbox_of(sandbox_app)
        sandbox.expire_access_tokens()
        sandbox.refresh_tokens.clear()
        sandbox.add_fault("/open-api/v3/oauth/authorize", "rate_limit", retry_after=0)
        result = await c.call_tool(tool, valid_args(tool, card_id))
    assert_shown_by_strict_clients(result, listed[tool], "upstream_error")
    assert "rate-limiting" in result.content[0].text  # type: ignore[union-attr]
    assert runtime(server).ledger.reserved_total(runtime(server).scope) == 0  # nothing held after a refusal


async def test_the_audit_log_still_names_the_refusal_code(make_server: ServerFactory) -> None:
    """Without structured content the audit outcome is still refused:<code> (read from the text)."""
    server = make_server(policy='[defaults]\nper_transaction = "5.00"\ntools = ["issue_card", "get_spend_status"]\n')
    async with Client(server) as c:
        await c.call_tool("issue_card", {"amount": "6.00", "request_id": "big"})
        await c.call_tool("get_balance", {})
    outcomes = [(r.tool, r.outcome) for r in runtime(server).audit.tail(10) if r.event == "tool_call"]
    assert ("issue_card", "refused:per_transaction_limit") in outcomes, outcomes
    assert ("get_balance", "refused:tool_not_allowed") in outcomes, outcomes
