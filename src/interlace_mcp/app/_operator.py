"""Operator actions, shared by the CLI and the dashboard: never reachable through an agent's tools."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from decimal import Decimal

from interlace_mcp.app._runtime import Runtime
from interlace_mcp.client import InterlaceError
from interlace_mcp.money import format_amount
from interlace_mcp.operations import FundAccount, MoneyMovement, Refusal, run_money
from interlace_mcp.policy import AgentPolicy, Approval, RequestKey, Tx, approvals, cards, requests

__all__ = ["OPERATOR_AGENT", "FreezeReport", "decide_approval", "fund_as_operator", "set_agent_frozen"]

#: Whose name the ledger files an operator's own money requests under: never an agent's (agent names cannot
#: start with "@"), so no agent can replay, conflict with or see them, and no agent's limits count them.
OPERATOR_AGENT = "@operator"
#: An operator's own action is not subject to any agent's policy: no limits, no approval band.
OPERATOR_POLICY = AgentPolicy(
    agent=OPERATOR_AGENT,
    per_transaction=None,
    daily=None,
    monthly=None,
    max_active_cards=None,
    fund_daily=None,
)

logger = logging.getLogger("interlace_mcp.operator")


def _decide(tx: Tx, rt: Runtime, approval_id: str, approve: bool, by: str, reason: str | None) -> Approval:
    """The decision and its audit record, in one transaction."""
    ttl = float(rt.settings.approval_ttl_seconds)
    decided = approvals.decide(tx, approval_id, approve=approve, by=by, reason=reason, ttl=ttl)
    rt.audit.append_in(
        tx,
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
    return decided


async def decide_approval(
    runtime: Runtime, approval_id: str, *, approve: bool, by: str, reason: str | None
) -> Approval:
    """Approve or deny a pending request (audited with the operator's name). Raises KeyError / ValueError."""
    decided = await runtime.store.write(_decide, runtime, approval_id, approve, by, reason)
    runtime.metrics.approval_event(agent=decided.agent, event="approved" if approve else "denied")
    runtime.wakeups.notify(decided.id)  # a call waiting for this decision in this process goes on at once
    return decided


def decide_approval_sync(runtime: Runtime, approval_id: str, *, approve: bool, by: str, reason: str | None) -> Approval:
    """:func:`decide_approval` for synchronous callers (the CLI)."""
    decided = runtime.store.write_sync(_decide, runtime, approval_id, approve, by, reason)
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
    operator's, so the agent cannot unfreeze them). Unfreeze: undo the operator's card freezes -- and those
    policy made (a purchase in a category it does not allow) -- then unblock."""
    store = runtime.store
    if freeze:
        await store.write(cards.set_agent_frozen, agent, True, by=by, reason=reason)
    agent_cards = await store.read(cards.agent_cards, runtime.scope, agent)
    failures: list[str] = []
    for card in agent_cards:
        try:
            if freeze:
                await runtime.api.freeze_card(card.card_id)
                await store.write(cards.set_card_frozen_by, runtime.scope, card.card_id, "operator")
            elif card.frozen_by in ("operator", "policy"):  # an operator's word lifts policy's freezes too
                await runtime.api.unfreeze_card(card.card_id)
                await store.write(cards.set_card_frozen_by, runtime.scope, card.card_id, None)
        except InterlaceError as exc:
            failures.append(f"card {card.card_id}: {exc}")
            logger.error("kill switch: card %s of %s: %s", card.card_id, agent, exc)
    if not freeze:
        await store.write(cards.set_agent_frozen, agent, False, by=by, reason=reason)
    await runtime.record(
        agent=agent,
        tool="agents",
        event="agent_frozen" if freeze else "agent_unfrozen",
        actor=by,
        detail=reason,
        outcome=f"{len(agent_cards) - len(failures)}/{len(agent_cards)} cards",
    )
    return FreezeReport(agent=agent, frozen=freeze, cards=len(agent_cards), failures=failures)


async def fund_as_operator(
    runtime: Runtime, amount: Decimal, *, currency: str, request_id: str, by: str
) -> MoneyMovement:
    """``interlace-mcp fund``: move ``amount`` stablecoins from the CryptoConnect wallet into the Infinity account.

    The same operation and runner as the agents' fund_account (request record, clientTransactionId, unknown
    outcome, recovery, reconcile, audit) under :data:`OPERATOR_AGENT`, with every audit record naming the
    operator (``by``). Not subject to an agent's policy. Raises :class:`Refusal` (audited) when refused.
    """
    op = FundAccount(amount, request_id, currency, wallet_id=runtime.settings.crypto_wallet_id)
    deps = replace(runtime.deps(), actor=by)
    key = RequestKey(runtime.scope, OPERATOR_AGENT, op.spec.name, request_id)
    known = await runtime.store.read(requests.get_request, key) is not None
    try:
        return await run_money(deps, OPERATOR_AGENT, OPERATOR_POLICY, op, stateless=[], known=known)
    except Refusal as refusal:
        if not refusal.audited:  # refused before the runner wrote anything (a conflict, no wallet)
            await runtime.record(
                agent=OPERATOR_AGENT,
                tool=op.spec.name,
                event="tool_call",
                arguments={"request_id": request_id, **op.arguments()},
                amount=format_amount(amount),
                request_id=request_id,
                outcome=f"refused:{refusal.code}",
                actor=by,
            )
            refusal.audited = True
        raise
