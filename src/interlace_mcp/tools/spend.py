"""Spend toolset: this agent's limits and what is used, reserved and left in each window."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from mcp.server.mcpserver import Resolve

from interlace_mcp.money import format_amount
from interlace_mcp.operations import FundingWindow, MerchantActivity, PendingApproval, SpendStatus, SpendWindow
from interlace_mcp.policy import (
    AgentPolicy,
    Approval,
    FundStatus,
    Reader,
    WindowStatus,
    activity,
    approvals,
    cards,
    funding,
    reports,
)
from interlace_mcp.tools._caller import Caller, resolve_caller

__all__ = ["get_spend_status"]


@dataclass(frozen=True)
class _Spend:
    windows: list[WindowStatus]
    approvals: list[Approval]
    active_cards: int
    frozen: bool
    activity: dict[str, Any]
    funding: FundStatus


def _spend(rx: Reader, scope: str, agent: str, policy: AgentPolicy) -> _Spend:
    """Everything the spend status shows, in one consistent read."""
    held = cards.agent_cards(rx, scope, agent)
    return _Spend(
        windows=reports.window_status(rx, scope, agent, policy),
        approvals=approvals.listing(rx, status=None, agent=agent),
        active_cards=len(held),
        frozen=cards.frozen(rx, agent) is not None,
        activity=activity.card_activity(rx, scope, [c.card_id for c in held], rx.now() - 24 * 3600),
        funding=funding.fund_status(rx, scope, agent, policy),
    )


async def get_spend_status(caller: Annotated[Caller, Resolve(resolve_caller)]) -> SpendStatus:
    """Show this agent's spend limits: per window the limit, spent, reserved, remaining and resets_at.

    Windows: transaction, day, week, month, lifetime; a null limit means none; reserved is held by calls in
    flight or awaiting approval. Also pending approvals, today's funding (fund_daily), what cards may buy
    (mcc_allow, mcc_block) and whether new cards are single-use or expire (single_use_cards,
    card_max_ttl_minutes).
    """
    rt, agent, policy = caller.runtime, caller.agent, caller.policy
    if await rt.store.read(approvals.any_due):
        await rt.store.write(approvals.expire_due)
    seen = await rt.store.read(_spend, rt.scope, agent, policy)
    open_approvals = [a for a in seen.approvals if a.status in ("pending", "approved") and a.scope == rt.scope]
    authorized: Decimal = seen.activity["authorized"]
    return SpendStatus(
        agent=agent,
        currency=policy.currency,
        frozen=seen.frozen,
        windows=[SpendWindow.model_validate(w.as_dict()) for w in seen.windows],
        max_active_cards=policy.max_active_cards,
        active_cards=seen.active_cards,
        approval_above=format_amount(policy.approval_above) if policy.approval_above is not None else None,
        funding=FundingWindow.model_validate(seen.funding.as_dict()),
        approval_daily_above=(
            format_amount(policy.approval_daily_above) if policy.approval_daily_above is not None else None
        ),
        pending_approvals=[
            PendingApproval(
                approval_id=a.id,
                tool=a.tool,
                request_id=a.request_id,
                amount=format_amount(a.amount),
                currency=a.currency,
                summary=a.summary,
                status=a.status,
                expires_at=a.expires_at_iso,
                approval_url=rt.approval_url(a.id),
            )
            for a in open_approvals
        ],
        mcc_allow=list(policy.mcc_allow),
        mcc_block=list(policy.mcc_block),
        single_use_cards=policy.single_use_cards,
        card_max_ttl_minutes=policy.card_max_ttl_minutes,
        merchant_activity=MerchantActivity(
            authorized=format_amount(authorized),
            approved=seen.activity["approved"],
            declined=seen.activity["declined"],
        ),
        sandbox=rt.sandbox,
    )
