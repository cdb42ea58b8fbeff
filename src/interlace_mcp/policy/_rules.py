"""The rules and their wording: every refusal names the rule, the limit, what is used and what remains.

The stateless rules (tool allow-list, kill switch, per-transaction, payee) need no ledger; the stateful
ones (calendar windows, ``max_active_cards``) are checked by the ledger inside the transaction that
reserves the amount (and read-only, the same way, before anyone is asked to confirm).
"""

from __future__ import annotations

from decimal import Decimal

from interlace_mcp.money import format_amount, from_minor, to_minor
from interlace_mcp.policy._policy import AgentPolicy
from interlace_mcp.policy._values import Violation
from interlace_mcp.policy._windows import epoch_to_iso

__all__ = [
    "approval_above_reason",
    "approval_denied_text",
    "approval_expired_text",
    "cards_violation",
    "confirmation_band_reason",
    "daily_approval_reason",
    "frozen_violation",
    "fund_violation",
    "payee_violation",
    "per_transaction_violation",
    "tool_violation",
    "window_violation",
]

WINDOW_CODES = {"day": "daily_limit", "week": "weekly_limit", "month": "monthly_limit", "lifetime": "lifetime_limit"}
_WINDOW_WORDS = {"day": "daily", "week": "weekly", "month": "monthly", "lifetime": "lifetime"}


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


def window_violation(
    window: str,
    limit: Decimal,
    currency: str,
    *,
    committed_minor: int,
    reserved_minor: int,
    requested: Decimal,
    resets: str | None,
) -> Violation:
    """A calendar window the request would push past its limit."""
    return _limit_violation(
        WINDOW_CODES[window],
        window,
        f"{_WINDOW_WORDS[window]} limit {format_amount(limit)} {currency}",
        "spent",
        limit,
        committed_minor=committed_minor,
        reserved_minor=reserved_minor,
        requested=requested,
        resets=resets,
    )


def fund_violation(
    limit: Decimal,
    currency: str,
    *,
    committed_minor: int,
    reserved_minor: int,
    requested: Decimal,
    resets: str | None,
) -> Violation:
    """The daily funding window (``fund_daily``) the request would push past its limit."""
    grant = " (funding is off until an operator sets fund_daily in the policy)" if to_minor(limit) == 0 else ""
    return _limit_violation(
        "fund_limit",
        "fund_day",
        f"daily funding limit {format_amount(limit)} {currency}{grant}",
        "funded",
        limit,
        committed_minor=committed_minor,
        reserved_minor=reserved_minor,
        requested=requested,
        resets=resets,
    )


def _limit_violation(
    code: str,
    window: str,
    head: str,
    used_word: str,
    limit: Decimal,
    *,
    committed_minor: int,
    reserved_minor: int,
    requested: Decimal,
    resets: str | None,
) -> Violation:
    """``<head>: X <used_word>, Y reserved, Z requested, W remaining; resets ...`` with the same figures as
    details (``used_word`` names the committed amount in both)."""
    remaining = max(to_minor(limit) - committed_minor - reserved_minor, 0)
    figures = {
        used_word: format_amount(from_minor(committed_minor)),
        "reserved": format_amount(from_minor(reserved_minor)),
        "requested": format_amount(requested),
        "remaining": format_amount(from_minor(remaining)),
    }
    used = ", ".join(f"{value} {name}" for name, value in figures.items())
    reset = f"resets {resets}" if resets else "never resets"
    return Violation(
        code,
        f"{head}: {used}; {reset}",
        {"window": window, "limit": format_amount(limit), **figures, "resets_at": resets},
    )


def cards_violation(limit: int, active: int, pending: int) -> Violation:
    return Violation(
        "max_active_cards",
        f"max active cards {limit}: {active} active, {pending} being issued, 0 remaining;"
        " close a card (close_card) to issue another",
        {"limit": limit, "active": active, "pending": pending},
    )


def approval_expired_text(approval_id: str, amount_minor: int, currency: str, expires_at: float, approved: bool) -> str:
    return (
        f"approval {approval_id} for {format_amount(from_minor(amount_minor))} {currency}"
        f" expired at {epoch_to_iso(expires_at)} without being "
        + ("used" if approved else "decided")
        + "; the reservation was released. Send a new request (new request_id) to ask again"
    )


def approval_denied_text(approval_id: str, amount_minor: int, currency: str, by: str, reason: str | None) -> str:
    who = by or "an operator"
    return (
        f"approval {approval_id} for {format_amount(from_minor(amount_minor))} {currency} was denied"
        f" by {who}" + (f": {reason}" if reason else "") + "; the reservation was released"
    )


# ---- why a request needs a human (said to the agent, the human and the notice) ----------------------------


def approval_above_reason(policy: AgentPolicy, amount: Decimal, currency: str) -> str | None:
    """``amount`` is above the agent's ``approval_above`` threshold (a human must approve it out of band)."""
    limit = policy.approval_above
    if limit is None or amount <= limit:
        return None
    return (
        f"{format_amount(amount)} {currency} is above this agent's approval threshold"
        f" (approval_above {format_amount(limit)})"
    )


def confirmation_band_reason(policy: AgentPolicy, amount: Decimal, currency: str, *, skipped: bool = False) -> str:
    """In the confirmation band, but the client cannot ask its user (``skipped``: its user was not asked, as
    the call looked like needing approval anyway): a human is asked out of band instead."""
    band = f"above confirm_above {format_amount(policy.confirm_above or Decimal(0))}"
    if policy.approval_above is not None:
        band += f", up to approval_above {format_amount(policy.approval_above)}"
    why = (
        "was not confirmed in the client (it looked like needing approval when checked)"
        if skipped
        else "this client cannot ask its user to confirm"
    )
    return (
        f"{format_amount(amount)} {currency} is in this agent's confirmation band ({band}) and {why},"
        " so a human was asked out of band instead"
    )


def daily_approval_reason(
    policy: AgentPolicy, amount: Decimal, currency: str, *, spent_minor: int, reserved_minor: int
) -> str | None:
    """The call would take the day's spent + reserved above ``approval_daily_above`` (splitting does not dodge it)."""
    threshold = policy.approval_daily_above
    if threshold is None or amount <= 0:
        return None
    total = spent_minor + reserved_minor + to_minor(amount)
    if total <= to_minor(threshold):
        return None
    return (
        f"it would take today's spend to {format_amount(from_minor(total))} {currency}"
        f" ({format_amount(from_minor(spent_minor))} spent + {format_amount(from_minor(reserved_minor))} reserved"
        f" + {format_amount(amount)} requested), above this agent's approval_daily_above"
        f" {format_amount(threshold)}"
    )
