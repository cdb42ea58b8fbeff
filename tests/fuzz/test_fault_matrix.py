"""Every money tool x every fault, over real sockets: an agent that retries the same request_id until it
gets a final answer moves money exactly once (zero times when refused), and ledger == upstream.

The emulator runs under uvicorn on a loopback port (timeouts and connection resets are real), the server
reaches it over HTTP with real OAuth. Each fault outlasts the first call's attempts (1 + 3 retries) and
also hits the first attempt of the agent's retry.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from starlette.applications import Starlette

from fuzz.support import (
    KNOWN_CODES,
    V3,
    error_code,
    loopback_emulator,
    loopback_server,
    movements_by_key,
    upstream_spend,
)
from helpers import ServerFactory, call, refuse, runtime, sandbox_of
from interlace_mcp.app import reconcile, recover

pytestmark = pytest.mark.anyio

POLICY = """\
[defaults]
per_transaction = "100.00"
daily = "1000.00"
monthly = "none"
max_active_cards = 5
transfer_payees = ["sandbox-payee"]
fund_daily = "1000.00"
"""
SETUP_LOAD = Decimal("20.00")
AMOUNT = "4.00"
TIMES = 5  # the first call's 4 attempts + the retry's first attempt
CLIENT_TIMEOUT = 0.5
TIMEOUT_DELAY_MS = 1000

#: tool -> (faulted path, movement kind at the emulator, spend)
TOOLS: dict[str, tuple[str, str, bool]] = {
    "issue_card": (f"{V3}/prepaid-card", "card_issue", True),
    "top_up_card": (f"{V3}/cards/transfer-in", "transfer_in", True),
    "withdraw_from_card": (f"{V3}/cards/transfer-out", "transfer_out", False),
    "close_card": (f"{V3}/cards/transfer-out", "transfer_out", False),
    "create_transfer": (f"{V3}/business/transfer/external", "transfer_external", True),
    "fund_account": (f"{V3}/business/transfer/internal", "wallet_to_infinity", False),
}
FAULTS: dict[str, dict[str, Any]] = {
    "timeout": {"kind": "timeout", "delay_ms": TIMEOUT_DELAY_MS},
    "reset": {"kind": "reset"},
    "500": {"kind": "error", "status": 500},
    "429": {"kind": "rate_limit", "retry_after": 0},
    "fail_after_commit": {"kind": "fail_after_commit", "status": 500},
    "fail_after_commit_drop": {"kind": "fail_after_commit", "status": 0},
}


def args_for(tool: str, card_id: str, request_id: str) -> dict[str, Any]:
    return {
        "issue_card": {"amount": AMOUNT},
        "top_up_card": {"card_id": card_id, "amount": AMOUNT},
        "withdraw_from_card": {"card_id": card_id, "amount": AMOUNT},
        "close_card": {"card_id": card_id},
        "create_transfer": {"payee": "sandbox-payee", "amount": AMOUNT},
        "fund_account": {"amount": AMOUNT},
    }[tool] | {"request_id": request_id}


async def retry_until_final(c: Client, tool: str, args: dict[str, Any], *, deadline: float = 20.0) -> tuple[str, Any]:
    """Call, and call again with the same request_id while the answer is in_progress."""
    with anyio.fail_after(deadline):
        while True:
            result = await c.call_tool(tool, args)
            if result.is_error:
                text = result.content[0].text  # type: ignore[union-attr]
                assert error_code(text) in KNOWN_CODES, text
                return "refused", text
            body = result.structured_content
            assert body is not None
            if body["status"] != "in_progress":
                return body["status"], body
            await anyio.sleep(0.2)


async def check_books(c: Client, server: Any, state: Any) -> None:
    """Ledger == upstream (spend and funding), nothing reserved, no clientTransactionId moved twice, reconcile
    clean."""
    rt = runtime(server)
    snapshot = state.snapshot()
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")
    assert rt.ledger.committed_total(rt.scope) == upstream_spend(snapshot)
    assert rt.ledger.fund_totals(rt.scope) == (Decimal(snapshot["funded_total"]), Decimal("0"))
    twice = {k: n for k, n in movements_by_key(snapshot).items() if n > 1}
    assert not twice, twice
    report = await reconcile(rt)
    assert report.ok, [d.detail for d in report.differences]


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("tool", list(TOOLS))
async def test_fault_then_retries_move_money_exactly_once(tmp_path: Path, tool: str, fault: str) -> None:
    path, kind, spends = TOOLS[tool]
    timeout = CLIENT_TIMEOUT if fault == "timeout" else 10.0
    async with loopback_emulator() as emu:
        server = loopback_server(emu.base_url, tmp_path, policy=POLICY, http_timeout_seconds=timeout)
        async with Client(server) as c:
            setup = await call(c, "issue_card", {"amount": str(SETUP_LOAD), "request_id": "setup"})
            card_id = setup["card"]["card_id"]
            state = emu.state
            before = len(state.movements)
            state.add_fault(path, **FAULTS[fault], times=TIMES)
            outcome, body = await retry_until_final(c, tool, args_for(tool, card_id, f"{tool}-{fault}"))
            state.clear_faults()
            new = [m for m in state.snapshot()["movements"][before:] if m["kind"] == kind]
            if fault == "429":
                # Interlace said it did not act: a definite refusal, the reservation released, nothing moved.
                assert outcome == "refused" and body.startswith("[upstream_error]"), body
                assert new == []
            else:
                assert outcome == "completed", body
                assert len(new) == 1, new
                expected = SETUP_LOAD if tool == "close_card" else Decimal(AMOUNT)
                assert Decimal(new[0]["amount"]) == expected
                assert body["amount"] == f"{expected:.2f}"
                # The same request_id now replays the stored result and moves nothing.
                again = await call(c, tool, args_for(tool, card_id, f"{tool}-{fault}"))
                assert again["status"] == "completed" and again["replayed"] is True
                assert again["transaction_id"] == body["transaction_id"]
            if tool in ("top_up_card", "withdraw_from_card"):
                card = await call(c, "get_card", {"card_id": card_id})
                delta = Decimal(0) if outcome == "refused" else Decimal(AMOUNT)
                sign = 1 if tool == "top_up_card" else -1
                assert Decimal(card["balance"]) == SETUP_LOAD + sign * delta
            if not spends:
                assert runtime(server).ledger.committed_total(runtime(server).scope) == SETUP_LOAD
            await check_books(c, server, state)


#: A fault on a later step: the card read after the load, or the delete after close_card's unload.
AFTER_MOVEMENT = {
    "top_up_card": "{card}/card-summary",
    "withdraw_from_card": "{card}/card-summary",
    "close_card": "{card}",
}
AFTER_FAULTS: dict[str, dict[str, Any]] = {
    "429": {"kind": "rate_limit", "retry_after": 0},
    "reset": {"kind": "reset"},
    "500": {"kind": "error", "status": 500},
}


@pytest.mark.parametrize("fault", list(AFTER_FAULTS))
@pytest.mark.parametrize("tool", list(AFTER_MOVEMENT))
async def test_a_fault_after_the_movement_never_moves_twice(tmp_path: Path, tool: str, fault: str) -> None:
    """The movement succeeded; the next step fails (even definitely): never released, never sent again."""
    async with loopback_emulator() as emu:
        server = loopback_server(emu.base_url, tmp_path, policy=POLICY)
        async with Client(server) as c:
            card_id = (await call(c, "issue_card", {"amount": str(SETUP_LOAD), "request_id": "setup"}))["card"][
                "card_id"
            ]
            state = emu.state
            before = len(state.movements)
            path = f"{V3}/cards/" + AFTER_MOVEMENT[tool].format(card=card_id)
            method = "DELETE" if tool == "close_card" else None
            state.add_fault(path, **AFTER_FAULTS[fault], method=method, times=TIMES)
            args = args_for(tool, card_id, f"{tool}-after-{fault}")
            first = await c.call_tool(tool, args)
            state.clear_faults()
            outcome, body = await retry_until_final(c, tool, args)
            new = [m for m in state.snapshot()["movements"][before:] if m["kind"] in ("transfer_in", "transfer_out")]
            assert outcome == "completed", (first, body)
            assert len(new) == 1, new
            await check_books(c, server, state)


# ---- found by the soak (bench/soak.py) -------------------------------------------------------------


async def test_a_close_stuck_on_a_stale_unload_is_released_by_recovery(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """close_card's unload is unknown, then the card spends: the resend (same amount) is refused for funds, so
    the close stays in progress; recovery sees the unload never happened and releases it (nothing moved)."""
    server = make_server()
    rt = runtime(server)
    sandbox = sandbox_of(sandbox_app)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        sandbox.add_fault(f"{V3}/cards/transfer-out", "error", status=500, times=4)
        first = await call(c, "close_card", {"card_id": card_id, "request_id": "close"})
        await call(c, "simulate_purchase", {"card_id": card_id, "amount": "1.00"})
        stuck = await call(c, "close_card", {"card_id": card_id, "request_id": "close"})
        report = await recover(rt, grace=0)
        fresh = await call(c, "close_card", {"card_id": card_id, "request_id": "close"})
        clean = await reconcile(rt)
    assert first["status"] == stuck["status"] == "in_progress"
    assert [r.split("/")[-1] for r in report.released] == ["close"] and not report.unresolved
    assert fresh["status"] == "completed" and fresh["amount"] == "4.00"
    assert clean.ok, [d.detail for d in clean.differences]
    outs = [m for m in sandbox.snapshot()["movements"] if m["kind"] == "transfer_out"]
    assert [m["amount"] for m in outs] == ["4.00"]


async def test_an_unknown_attempt_followed_by_429s_is_not_a_definite_failure(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """Attempt 1 applied then 500, attempts 2-4 get 429: still unknown (in_progress), never released or resent."""
    server = make_server()
    rt = runtime(server)
    sandbox = sandbox_of(sandbox_app)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        path = f"{V3}/cards/transfer-in"
        sandbox.add_fault(path, "fail_after_commit", status=500, times=1)  # attempt 1: applied, then 500
        sandbox.add_fault(path, "rate_limit", retry_after=0, times=3)  # attempts 2-4: 429
        args = {"card_id": card_id, "amount": "2.00", "request_id": "t"}
        first = await c.call_tool("top_up_card", args)
        second = await c.call_tool("top_up_card", args)
    loads = [m for m in sandbox.snapshot()["movements"] if m["kind"] == "transfer_in"]
    assert not first.is_error, first.content  # in_progress, not "[upstream_error] ... nothing moved"
    assert not second.is_error and len(loads) == 1, loads
    assert rt.ledger.committed_total(rt.scope) == upstream_spend(sandbox.snapshot())


async def test_a_failed_card_read_is_a_coded_refusal(make_server: ServerFactory, sandbox_app: Starlette) -> None:
    """A read tool whose Interlace call fails answers with a [code], never the SDK's bare crash text."""
    sandbox = sandbox_of(sandbox_app)
    async with Client(make_server()) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        sandbox.add_fault(f"{V3}/cards/{card_id}/card-summary", "error", status=500, times=4)
        text = await refuse(c, "get_card", {"card_id": card_id})
    assert error_code(text) == "upstream_error", text


async def test_a_failed_read_in_list_cards_is_a_coded_refusal(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """list_cards reads cards in parallel; one failing read is an [upstream_error], not an exception group."""
    sandbox = sandbox_of(sandbox_app)
    async with Client(make_server()) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        sandbox.add_fault(f"{V3}/cards/{card_id}/card-summary", "error", status=500, times=4)
        text = await refuse(c, "list_cards", {})
    assert error_code(text) == "upstream_error", text
