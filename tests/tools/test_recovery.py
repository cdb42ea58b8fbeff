"""Unfinished requests are settled by lookup (never by sending), and reconcile reports every difference."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from mcp import Client

from helpers import Clock, ServerFactory, call, refuse, runtime, sandbox_of
from interlace_mcp.app import reconcile, recover

pytestmark = pytest.mark.anyio
TRANSFER_IN = "/open-api/v3/cards/transfer-in"


async def test_recovery_commits_what_happened_and_releases_what_did_not(
    make_server: ServerFactory, sandbox_app: Any, clock: Clock
) -> None:
    """One top-up applied but unanswered -> committed; one never applied -> released; no new movement."""
    server = make_server()
    rt = runtime(server)
    sandbox = sandbox_of(sandbox_app)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        sandbox.add_fault(TRANSFER_IN, "fail_after_commit", status=500, times=1)
        sandbox.add_fault(TRANSFER_IN, "error", status=500, times=3)
        applied = await call(c, "top_up_card", {"card_id": card_id, "amount": "2.00", "request_id": "applied"})
        sandbox.add_fault(TRANSFER_IN, "error", status=503, times=4)
        lost = await call(c, "top_up_card", {"card_id": card_id, "amount": "3.00", "request_id": "lost"})
        assert applied["status"] == lost["status"] == "in_progress"
        assert rt.ledger.reserved_total(rt.scope) == Decimal("5.00")
        moves_before = len(sandbox.snapshot()["movements"])

        early = await recover(rt, grace=60)
        clock.advance(61)
        report = await recover(rt, grace=60)
        assert len(sandbox.snapshot()["movements"]) == moves_before  # recovery never sends
        replay = await call(c, "top_up_card", {"card_id": card_id, "amount": "2.00", "request_id": "applied"})
        forgotten = await refuse(c, "get_request_status", {"request_id": "lost"})
        retried = await call(c, "top_up_card", {"card_id": card_id, "amount": "3.00", "request_id": "lost"})
    assert early.skipped_recent == 2 and not early.committed  # too recent: maybe still in flight elsewhere
    assert [r.split("/")[-1] for r in report.committed] == ["applied"]
    assert [r.split("/")[-1] for r in report.released] == ["lost"]
    assert replay["status"] == "completed" and replay["replayed"] is True
    # Released like a definite failure: forgotten, so the same request_id runs afresh (once).
    assert forgotten.startswith("[not_found]")
    assert retried["status"] == "completed" and retried["replayed"] is False
    assert len(sandbox.snapshot()["movements"]) == moves_before + 1
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")
    assert rt.ledger.committed_total(rt.scope) == Decimal("10.00")


async def test_reconcile_reports_upstream_only_and_amount_mismatch(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """A clean ledger matches; a movement made behind our back and an edited amount are both reported."""
    server = make_server()
    rt = runtime(server)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        await call(c, "top_up_card", {"card_id": card_id, "amount": "2.00", "request_id": "t1"})
        await call(c, "create_transfer", {"payee": "sandbox-payee", "amount": "1.00", "request_id": "p1"})
        clean = await reconcile(rt)
        await rt.api.transfer_in(
            card_id=card_id, amount=Decimal("4.00"), client_transaction_id="rogue", idempotency_key="rogue"
        )
        rt.ledger._conn.execute(  # simulate a ledger that disagrees with Interlace
            "UPDATE requests SET result_json = json_set(result_json, '$.amount', '2.50') WHERE request_id = 't1'"
        )
        dirty = await reconcile(rt)
    assert clean.ok and clean.matched == 2
    kinds = sorted(d.kind for d in dirty.differences)
    assert kinds == ["amount_mismatch", "upstream_only"]
    assert any("rogue" in d.detail for d in dirty.differences)
