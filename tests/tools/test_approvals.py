"""Human approvals above approval_above: pending, approve, deny, expiry -- never through an agent tool."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from mcp import Client

from helpers import BOTH_BACKENDS, Clock, ServerFactory, call, refuse, runtime, sandbox_of

pytestmark = [pytest.mark.anyio, BOTH_BACKENDS]

POLICY = (
    '[defaults]\nper_transaction = "100.00"\ndaily = "100.00"\napproval_above = "25.00"\n'
    'transfer_payees = ["sandbox-payee"]\n'
)


def loads(sandbox_app: Any) -> list[dict[str, Any]]:
    return [m for m in sandbox_of(sandbox_app).snapshot()["movements"] if m["kind"] in ("card_issue", "transfer_in")]


async def test_pending_then_approve_then_retry_executes_exactly_once(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """Above the threshold nothing moves, the amount stays reserved; after approval the retry moves it once."""
    server = make_server(policy=POLICY)
    rt = runtime(server)
    async with Client(server) as c:
        args = {"amount": "30.00", "request_id": "big-1"}
        pending = await call(c, "issue_card", args)
        assert pending["status"] == "pending_approval" and pending["approval_id"] and pending["expires_at"]
        again = await call(c, "issue_card", args)  # retries while pending create no second approval
        assert again["approval_id"] == pending["approval_id"] and again["replayed"] is True
        assert loads(sandbox_app) == []
        status = await call(c, "get_spend_status", {})
        day = next(w for w in status["windows"] if w["window"] == "day")
        assert day["reserved"] == "30.00" and [p["approval_id"] for p in status["pending_approvals"]] == [
            pending["approval_id"]
        ]
        assert len(rt.ledger.list_approvals()) == 1

        rt.ledger.decide(pending["approval_id"], approve=True, by="alice")
        done = await call(c, "issue_card", args)
        replay = await call(c, "issue_card", args)
        req = await call(c, "get_request_status", {"request_id": "big-1"})
    assert done["status"] == "completed" and done["card"]["balance"] == "30.00"
    assert replay["replayed"] is True and replay["card"] == done["card"]
    assert [m["amount"] for m in loads(sandbox_app)] == ["30.00"]
    assert req["status"] == "completed"
    assert rt.ledger.committed_total(rt.scope) == Decimal("30.00")
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")


async def test_denied_request_is_released_and_refused_with_the_reason(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """A deny releases the reservation; the retry is refused naming who denied and why."""
    server = make_server(policy=POLICY)
    rt = runtime(server)
    async with Client(server) as c:
        pending = await call(c, "create_transfer", {"payee": "sandbox-payee", "amount": "40.00", "request_id": "t"})
        rt.ledger.decide(pending["approval_id"], approve=False, by="bob", reason="not in budget")
        text = await refuse(c, "create_transfer", {"payee": "sandbox-payee", "amount": "40.00", "request_id": "t"})
        req = await call(c, "get_request_status", {"request_id": "t"})
    assert text.startswith("[approval_denied]") and "bob" in text and "not in budget" in text
    assert req["status"] == "denied"
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")
    assert sandbox_of(sandbox_app).snapshot()["transfers_total"] == "0.00"


async def test_expired_approval_is_released_and_refused(make_server: ServerFactory, clock: Clock) -> None:
    """An undecided approval expires after the TTL (default 15 min): released, refused as expired."""
    server = make_server(policy=POLICY)
    rt = runtime(server)
    async with Client(server) as c:
        pending = await call(c, "issue_card", {"amount": "26.00", "request_id": "slow"})
        clock.advance(899)
        assert (await call(c, "issue_card", {"amount": "26.00", "request_id": "slow"}))["status"] == "pending_approval"
        clock.advance(2)
        text = await refuse(c, "issue_card", {"amount": "26.00", "request_id": "slow"})
    assert text.startswith("[approval_expired]") and pending["approval_id"] in text
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")
    with pytest.raises(ValueError, match="already expired"):
        rt.ledger.decide(pending["approval_id"], approve=True, by="alice")


async def test_approved_but_unused_approval_expires_too(make_server: ServerFactory, clock: Clock) -> None:
    """An approval the agent never uses is released after the TTL, counted from the decision."""
    server = make_server(policy=POLICY)
    rt = runtime(server)
    async with Client(server) as c:
        pending = await call(c, "issue_card", {"amount": "26.00", "request_id": "late"})
        clock.advance(600)
        rt.ledger.decide(pending["approval_id"], approve=True, by="alice", ttl=900)
        clock.advance(901)
        text = await refuse(c, "issue_card", {"amount": "26.00", "request_id": "late"})
    assert text.startswith("[approval_expired]")
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")


async def test_pending_amount_counts_against_the_limit(make_server: ServerFactory) -> None:
    """A reservation held for approval blocks spending past the limit meanwhile."""
    async with Client(make_server(policy=POLICY)) as c:
        await call(c, "issue_card", {"amount": "80.00", "request_id": "p"})
        text = await refuse(c, "issue_card", {"amount": "25.00", "request_id": "q"})
    assert text.startswith("[daily_limit]") and "80.00 reserved" in text


async def test_the_agent_has_no_tool_that_approves(make_server: ServerFactory) -> None:
    """No tool name or description offers approving, denying or changing policy."""
    async with Client(make_server(policy=POLICY)) as c:
        tools = (await c.list_tools()).tools
        unknown = await c.call_tool("approve", {"approval_id": "x"})
    assert not any("approv" in t.name or "policy" in t.name or "limit" in t.name for t in tools)
    assert unknown.is_error
