"""What a model reads: descriptions it can act on first time, and get_request_status doing what it says."""

from __future__ import annotations

import typing

import pytest
from mcp import Client

from fuzz.support import KNOWN_CODES
from helpers import ServerFactory, call, refuse
from interlace_mcp.policy import Ledger
from interlace_mcp.server import INSTRUCTIONS
from interlace_mcp.tools import SPECS, build_tool
from interlace_mcp.tools._params import CardStatus

pytestmark = pytest.mark.anyio

LIMITS = '[defaults]\nper_transaction = "20.00"\ndaily = "100.00"\n'


async def test_a_refused_request_reads_refused_with_its_text(make_server: ServerFactory) -> None:
    """A refusal stores nothing, yet get_request_status answers refused (code, message) instead of not_found."""
    async with Client(make_server(policy=LIMITS)) as c:
        text = await refuse(c, "issue_card", {"amount": "50.00", "request_id": "too-big"})
        assert text.startswith("[per_transaction_limit]")
        status = await call(c, "get_request_status", {"request_id": "too-big"})
        assert (status["status"], status["tool"], status["amount"], status["currency"]) == (
            "refused",
            "issue_card",
            "50.00",
            "USD",
        )
        assert status["message"].startswith(text) and "may be used again" in status["message"]
        assert status["result"] is None
        # The id was free: the corrected call runs, and from then on the ledger answers.
        await call(c, "issue_card", {"amount": "5.00", "request_id": "too-big"})
        done = await call(c, "get_request_status", {"request_id": "too-big"})
        assert done["status"] == "completed" and done["result"]["amount"] == "5.00"
        # Unknown ids, and read tools' refusals, stay not_found.
        assert (await refuse(c, "get_request_status", {"request_id": "never"})).startswith("[not_found]")


async def test_refusal_notes_are_per_agent(make_server: ServerFactory, database_url: str, clock: object) -> None:
    """Another agent on the same ledger never learns of this agent's refusal."""
    ledger = Ledger.from_url(database_url, clock=clock)  # type: ignore[arg-type]
    server = make_server(policy=LIMITS, agent_id="alice", ledger=ledger)
    async with Client(server) as c:
        await refuse(c, "create_transfer", {"payee": "nobody", "amount": "1.00", "request_id": "t-1"})
        assert (await call(c, "get_request_status", {"request_id": "t-1"}))["status"] == "refused"
    other = make_server(policy=LIMITS, agent_id="bob", ledger=ledger)
    other.interlace_runtime.refusals = server.interlace_runtime.refusals  # type: ignore[attr-defined]  # same process
    async with Client(other) as c:
        assert (await refuse(c, "get_request_status", {"request_id": "t-1"})).startswith("[not_found]")


async def test_refusal_notes_are_memory_only(make_server: ServerFactory, database_url: str, clock: object) -> None:
    """As documented: a restarted server (same ledger) no longer knows the refusal -- nothing was stored."""
    async with Client(make_server(policy=LIMITS)) as c:
        await refuse(c, "top_up_card", {"card_id": "c-1", "amount": "50.00", "request_id": "r"})
    async with Client(make_server(policy=LIMITS)) as c:
        assert (await refuse(c, "get_request_status", {"request_id": "r"})).startswith("[not_found]")


def test_instructions_explain_the_infinity_account_and_every_refusal_code() -> None:
    """The server instructions say what the Infinity account is, the formats, and name the refusal codes."""
    assert "The Infinity account is this Interlace account's main USD balance" in INSTRUCTIONS
    assert "ISO 8601 UTC" in INSTRUCTIONS and '"10.50"' in INSTRUCTIONS
    for code in (*KNOWN_CODES, "card_max_ttl_minutes"):
        assert code in INSTRUCTIONS, code
    for field in ("merchant", "label", "memo", "issuer_text"):
        assert field in INSTRUCTIONS.split("Untrusted data:")[1]


def test_descriptions_say_what_a_model_must_know() -> None:
    """Card statuses explained; simulate_purchase spends the card; withdrawals and closes are plainly not
    spend and give nothing back; every money tool names its unit."""
    tools = {spec.name: build_tool(spec) for spec in SPECS}
    get_card = tools["get_card"].description or ""
    for status in (*typing.get_args(typing.get_args(CardStatus)[0]), "DELETED"):
        assert f"{status} (" in get_card or f"{status} or " in get_card, status
    assert "spends the card's balance" in (tools["simulate_purchase"].description or "")
    withdraw = tools["withdraw_from_card"].description or ""
    assert "Not spend" in withdraw and "gives no allowance back" in withdraw
    assert "Not spend, and gives no allowance back" in (tools["close_card"].description or "")
    for spec in SPECS:
        if spec.money:
            description = tools[spec.name].description or ""
            assert "USD" in description or "USDC" in description, spec.name
