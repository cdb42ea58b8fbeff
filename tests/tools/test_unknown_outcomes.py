"""A money call that ends without a usable answer is in_progress, never failed, and never moves twice."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from mcp import Client

from helpers import ServerFactory, call, refuse, runtime, sandbox_of

pytestmark = pytest.mark.anyio

# The client makes 1 + max_retries (3) attempts; a fault that outlasts them leaves the outcome unknown.
ALL_ATTEMPTS = 4
CASES = [
    ("top_up_card", "/open-api/v3/cards/transfer-in", "transfer_in"),
    ("create_transfer", "/open-api/v3/business/transfer/external", "transfer_external"),
    ("issue_card", "/open-api/v3/prepaid-card", "card_issue"),
    ("withdraw_from_card", "/open-api/v3/cards/transfer-out", "transfer_out"),
    ("close_card", "/open-api/v3/cards/transfer-out", "transfer_out"),
]
FAULTS = [
    ("fail_after_commit", {"status": 500}),
    ("error", {"status": 502}),
]


def args_for(tool: str, card_id: str) -> dict[str, Any]:
    return {
        "top_up_card": {"card_id": card_id, "amount": "4.00"},
        "create_transfer": {"payee": "sandbox-payee", "amount": "4.00"},
        "issue_card": {"amount": "4.00"},
        "withdraw_from_card": {"card_id": card_id, "amount": "4.00"},
        "close_card": {"card_id": card_id},
    }[tool] | {"request_id": f"{tool}-req"}


@pytest.mark.parametrize(("tool", "path", "kind"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize(("fault", "options"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_fault_then_retry_moves_money_exactly_once(
    make_server: ServerFactory, sandbox_app: Any, tool: str, path: str, kind: str, fault: str, options: dict[str, Any]
) -> None:
    """First call: in_progress with the reservation held; retry with the same request_id: completed, one movement."""
    server = make_server()
    rt = runtime(server)
    sandbox = sandbox_of(sandbox_app)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "8.00", "request_id": "setup"}))["card"]["card_id"]
        before = [m for m in sandbox.snapshot()["movements"] if m["kind"] == kind]
        if fault == "fail_after_commit":
            # Applied, then an error; every retry (answered from the idempotency record) fails too.
            sandbox.add_fault(path, fault, times=1, **options)
            sandbox.add_fault(path, "error", times=ALL_ATTEMPTS - 1, status=500)
        else:
            sandbox.add_fault(path, fault, times=ALL_ATTEMPTS, **options)
        args = args_for(tool, card_id)
        first = await call(c, tool, args)
        assert first["status"] == "in_progress", first
        assert "same request_id" in first["message"]
        status = await call(c, "get_request_status", {"request_id": args["request_id"]})
        assert status["status"] == "in_progress"
        if tool in ("top_up_card", "create_transfer", "issue_card"):
            assert rt.ledger.reserved_total(rt.scope) == Decimal("4.00")  # held while unknown
        second = await call(c, tool, args)
        third = await call(c, tool, args)
    after = [m for m in sandbox.snapshot()["movements"] if m["kind"] == kind]
    assert second["status"] == "completed" and second["replayed"] is True
    assert third == second
    assert len(after) == len(before) + 1, after
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")
    spent = Decimal("8.00") + (Decimal("4.00") if tool in ("top_up_card", "create_transfer", "issue_card") else 0)
    assert rt.ledger.committed_total(rt.scope) == spent
    snapshot = sandbox.snapshot()
    upstream = Decimal(snapshot["loaded_total"]) + Decimal(snapshot["transfers_total"])
    assert upstream == spent  # ledger == upstream


async def test_transient_fault_within_retries_completes_in_one_call(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """One 503 then success: the client's retry (same keys) completes the call; one movement."""
    sandbox = sandbox_of(sandbox_app)
    async with Client(make_server()) as c:
        card_id = (await call(c, "issue_card", {"amount": "2.00", "request_id": "s"}))["card"]["card_id"]
        sandbox.add_fault("/open-api/v3/cards/transfer-in", "fail_after_commit", status=503, times=1)
        done = await call(c, "top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "t"})
    assert done["status"] == "completed" and done["replayed"] is False
    loads = [m for m in sandbox.snapshot()["movements"] if m["kind"] == "transfer_in"]
    assert len(loads) == 1
    requests = sandbox.snapshot()["requests"]
    assert sum(v for k, v in requests.items() if k.endswith("/cards/transfer-in")) == 2


async def test_rate_limit_past_retries_is_a_definite_refusal_that_releases(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """A 429 means Interlace did not act: refused (nothing moved, reservation released); a retry works."""
    server = make_server()
    rt = runtime(server)
    sandbox = sandbox_of(sandbox_app)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "2.00", "request_id": "s"}))["card"]["card_id"]
        sandbox.add_fault("/open-api/v3/cards/transfer-in", "rate_limit", retry_after=0, times=ALL_ATTEMPTS)
        args = {"card_id": card_id, "amount": "1.00", "request_id": "t"}
        text = await refuse(c, "top_up_card", args)
        assert rt.ledger.reserved_total(rt.scope) == Decimal("0")
        done = await call(c, "top_up_card", args)
    assert text.startswith("[upstream_error]") and "rate-limiting" in text and "nothing moved" in text
    assert done["status"] == "completed"
    assert len([m for m in sandbox.snapshot()["movements"] if m["kind"] == "transfer_in"]) == 1


async def test_a_failed_read_after_the_movement_completes_with_a_warning(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """Transfer applied, then the card read fails (5xx or 429): completed with a warning; never moved twice."""
    sandbox = sandbox_of(sandbox_app)
    async with Client(make_server()) as c:
        card_id = (await call(c, "issue_card", {"amount": "2.00", "request_id": "s"}))["card"]["card_id"]
        for kind, options in (("error", {"status": 500}), ("rate_limit", {"retry_after": 0})):
            sandbox.add_fault(f"/open-api/v3/cards/{card_id}/card-summary", kind, times=ALL_ATTEMPTS, **options)
            args = {"card_id": card_id, "amount": "1.00", "request_id": f"t-{kind}"}
            first = await call(c, "top_up_card", args)
            second = await call(c, "top_up_card", args)
            assert first["status"] == "completed" and first["card"] is None
            assert first["warnings"] and "could not be read" in first["warnings"][0]
            assert second["replayed"] is True and second["transaction_id"] == first["transaction_id"]
        shown = await call(c, "get_card", {"card_id": card_id})
    assert shown["balance"] == "4.00"
    assert len([m for m in sandbox.snapshot()["movements"] if m["kind"] == "transfer_in"]) == 2  # one per request
