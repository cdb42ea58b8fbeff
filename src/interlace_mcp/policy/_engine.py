"""Stateless policy rules (the ones that need no ledger): tool allow-list, kill switch, per-transaction, payee.

The stateful rules (calendar windows, ``max_active_cards``) are checked by the ledger inside the same
transaction that reserves the amount.
"""

from __future__ import annotations

from decimal import Decimal

from interlace_mcp.money import format_amount
from interlace_mcp.policy._ledger import Violation
from interlace_mcp.policy._policy import AgentPolicy

__all__ = ["frozen_violation", "payee_violation", "per_transaction_violation", "tool_violation"]


def tool_violation(policy: AgentPolicy, tool: str) -> Violation | None:
    if policy.allows_tool(tool):
        return None
    return Violation(
        "tool_not_allowed",
        f"agent {policy.agent!r} may not use {tool}; its policy allows only: {', '.join(policy.tools) or 'no tools'}",
        {"tool": tool},
    )


def frozen_violation(agent: str, frozen: tuple[str | None, str | None] | None) -> Violation | None:
    if frozen is None:
        return None
    reason, who = frozen
    return Violation(
        "agent_frozen",
        f"agent {agent!r} is frozen by {who or 'an operator'}"
        + (f" ({reason})" if reason else "")
        + ": its cards are frozen and money tools are blocked until an operator unfreezes it",
        {"reason": reason, "by": who},
    )


def per_transaction_violation(policy: AgentPolicy, amount: Decimal, currency: str) -> Violation | None:
    limit = policy.per_transaction
    if limit is None or amount <= limit:
        return None
    return Violation(
        "per_transaction_limit",
        f"per-transaction limit {format_amount(limit)} {currency}: {format_amount(amount)} requested"
        f" is {format_amount(amount - limit)} over; split it or ask an operator to raise the limit",
        {"limit": format_amount(limit), "requested": format_amount(amount)},
    )


def payee_violation(policy: AgentPolicy, payee: str, known: bool) -> Violation | None:
    if known and payee in policy.transfer_payees:
        return None
    allowed = ", ".join(policy.transfer_payees) or "none"
    return Violation(
        "payee_not_allowed",
        f"payee {payee!r} is not on agent {policy.agent!r}'s transfer_payees list (allowed: {allowed});"
        " list_payees shows them",
        {"payee": payee},
    )
