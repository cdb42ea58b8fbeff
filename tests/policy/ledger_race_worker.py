"""Child-process body for the cross-process ledger race (imported by spawned processes, not a test)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from interlace_mcp.policy import AgentPolicy, Ledger, RequestKey
from interlace_mcp.policy import Refusal as Refused

SCOPE = "race"
AGENT = "racer"
POLICY = AgentPolicy(
    agent=AGENT, per_transaction=None, daily=Decimal("100.00"), monthly=None, weekly=None, max_active_cards=None
)


def reserve_many(url: str, worker: int, count: int, now: float, barrier: Any, results: Any) -> None:
    """Open a ledger on the database ``url`` and try ``count`` reservations of 5.00; report how many were accepted."""
    barrier.wait()
    ledger = Ledger.from_url(url, clock=lambda: now)
    accepted = 0
    try:
        for i in range(count):
            key = RequestKey(SCOPE, AGENT, "issue_card", f"w{worker}-{i}")
            try:
                ledger.begin(key, args_hash=key.request_id, policy=POLICY, spend=Decimal("5.00"), currency="USD")
            except Refused:
                continue
            accepted += 1
    finally:
        ledger.close()
    results.put((worker, accepted))
