"""Spend toolset: this agent's limits and what is used, reserved and left in each window."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context

from interlace_mcp.money import format_amount
from interlace_mcp.tools._flow import in_thread
from interlace_mcp.tools._results import MerchantActivity, PendingApproval, SpendStatus, SpendWindow
from interlace_mcp.tools._runtime import runtime_of

__all__ = ["get_spend_status"]


async def get_spend_status(ctx: Context[Any, Any]) -> SpendStatus:
    """Show this agent's spend limits: per window the limit, spent, reserved, remaining and reset time."""
    rt = runtime_of(ctx)
    agent = rt.agent_of(ctx)
    policy = rt.policies.for_agent(agent)
    windows = await in_thread(rt.ledger.window_status, rt.scope, agent, policy)
    approvals = await in_thread(rt.ledger.list_approvals, status=None, agent=agent)
    cards = await in_thread(rt.ledger.agent_cards, rt.scope, agent)
    frozen = await in_thread(rt.ledger.agent_frozen, agent)
    open_approvals = [a for a in approvals if a.status in ("pending", "approved") and a.scope == rt.scope]
    activity = await in_thread(
        rt.ledger.card_activity, rt.scope, [c.card_id for c in cards], rt.ledger.now() - 24 * 3600
    )
    return SpendStatus(
        agent=agent,
        currency=policy.currency,
        frozen=frozen is not None,
        windows=[SpendWindow.model_validate(w.as_dict()) for w in windows],
        max_active_cards=policy.max_active_cards,
        active_cards=len(cards),
        approval_above=format_amount(policy.approval_above) if policy.approval_above is not None else None,
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
            )
            for a in open_approvals
        ],
        merchant_activity=MerchantActivity(
            authorized=format_amount(activity["authorized"]),
            approved=activity["approved"],
            declined=activity["declined"],
        ),
        sandbox=rt.sandbox,
    )
