"""Operator actions, shared by the CLI and the dashboard: never reachable through an agent's tools."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio.to_thread

from interlace_mcp.client import InterlaceError
from interlace_mcp.money import format_amount
from interlace_mcp.policy import Approval
from interlace_mcp.tools._runtime import Runtime

__all__ = ["FreezeReport", "decide_approval", "set_agent_frozen"]

logger = logging.getLogger("interlace_mcp.operator")


def decide_approval(runtime: Runtime, approval_id: str, *, approve: bool, by: str, reason: str | None) -> Approval:
    """Approve or deny a pending request (audited with the operator's name). Raises KeyError / ValueError."""
    decided = runtime.ledger.decide(
        approval_id, approve=approve, by=by, reason=reason, ttl=float(runtime.settings.approval_ttl_seconds)
    )
    runtime.audit.append(
        agent=decided.agent,
        tool=decided.tool,
        event="approval_decision",
        decision="approved" if approve else "denied",
        amount=format_amount(decided.amount),
        currency=decided.currency,
        request_id=decided.request_id,
        actor=by,
        detail=reason,
        scope=decided.scope,
    )
    runtime.metrics.approval_event(agent=decided.agent, event="approved" if approve else "denied")
    return decided


@dataclass(frozen=True)
class FreezeReport:
    agent: str
    frozen: bool
    cards: int
    failures: list[str]


async def set_agent_frozen(runtime: Runtime, agent: str, *, freeze: bool, by: str, reason: str | None) -> FreezeReport:
    """The kill switch. Freeze: block money tools first, then freeze every card at Interlace (marked as the
    operator's, so the agent cannot unfreeze them). Unfreeze: undo the operator's card freezes, then unblock."""
    ledger = runtime.ledger
    if freeze:
        await anyio.to_thread.run_sync(lambda: ledger.set_agent_frozen(agent, True, by=by, reason=reason))
    cards = await anyio.to_thread.run_sync(ledger.agent_cards, runtime.scope, agent)
    failures: list[str] = []
    for card in cards:
        try:
            if freeze:
                await runtime.api.freeze_card(card.card_id)
                await anyio.to_thread.run_sync(ledger.set_card_frozen_by, runtime.scope, card.card_id, "operator")
            elif card.frozen_by == "operator":
                await runtime.api.unfreeze_card(card.card_id)
                await anyio.to_thread.run_sync(ledger.set_card_frozen_by, runtime.scope, card.card_id, None)
        except InterlaceError as exc:
            failures.append(f"card {card.card_id}: {exc}")
            logger.error("kill switch: card %s of %s: %s", card.card_id, agent, exc)
    if not freeze:
        await anyio.to_thread.run_sync(lambda: ledger.set_agent_frozen(agent, False, by=by, reason=reason))
    await runtime.record(
        agent=agent,
        tool="agents",
        event="agent_frozen" if freeze else "agent_unfrozen",
        actor=by,
        detail=reason,
        outcome=f"{len(cards) - len(failures)}/{len(cards)} cards",
    )
    return FreezeReport(agent=agent, frozen=freeze, cards=len(cards), failures=failures)
