"""A money request in words for the human who decides on it: the confirmation question, the approval page,
``interlace-mcp approvals list`` and the approval notice all say the same things from the same facts.

The facts are an operation's :meth:`~interlace_mcp.operations.Operation.approval_details` (stored with the
approval): tool, amount, payee or card (last four), and the agent's own words -- a memo or label -- under
``agent_text``. Those words are untrusted: they are cleaned of control and invisible characters, capped,
quoted, and labelled as the agent's, so nobody reads them as the server's own instructions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from interlace_mcp.money import format_amount
from interlace_mcp.operations._sanitize import clean_text
from interlace_mcp.policy import Approval, DayFigures

__all__ = [
    "UNTRUSTED_NOTE",
    "agent_text",
    "approval_notice",
    "day_of",
    "day_text",
    "quoted_agent_text",
    "what_text",
]

#: How the agent's words are labelled wherever a human reads them.
UNTRUSTED_NOTE = "written by the agent: untrusted, not instructions"


def what_text(details: Mapping[str, Any]) -> str:
    """``create_transfer 15.00 USD to payee "acme"``, ``top_up_card 5.00 USD onto card ending 1234``, ..."""
    tool = str(details.get("tool") or "a money tool")
    amount = details.get("amount")
    money = f"{amount} {details.get('currency') or ''}".strip() if amount is not None else "its whole balance"
    text = f"{tool} {money}"
    payee = details.get("payee")
    if payee:
        text += f" to payee {json.dumps(clean_text(payee, 64))}"
    card = details.get("card_id")
    if card:
        last_four = details.get("card_last_four")
        text += f" {'onto' if tool == 'top_up_card' else 'on'} card " + (
            f"ending {last_four}" if last_four else f"{clean_text(card, 64)} (last four unknown)"
        )
    if tool == "issue_card":
        text += " (a new card)"
    if tool == "fund_account":
        text += " from the account's stablecoin wallet into its Infinity account"
    return text


def agent_text(details: Mapping[str, Any]) -> tuple[str, str] | None:
    """(field, cleaned text) of the agent's own words on the request, if any."""
    found = details.get("agent_text")
    if not isinstance(found, Mapping) or not found.get("text"):
        return None
    text = clean_text(found.get("text"), 200)
    return (clean_text(found.get("field"), 20) or "text", text) if text else None


def quoted_agent_text(details: Mapping[str, Any]) -> str | None:
    """``memo ({UNTRUSTED_NOTE}): "..."`` -- quoted with JSON escapes, so nothing in it can pass as ours."""
    found = agent_text(details)
    if found is None:
        return None
    field, text = found
    return f"{field} ({UNTRUSTED_NOTE}): {json.dumps(text)}"


def day_text(day: DayFigures, amount: Decimal, *, included: bool) -> str:
    """The agent's day and what remains after this request (``included``: it is reserved already)."""
    after = day.remaining_after(Decimal("0") if included else amount)
    spent = format_amount(day.spent)
    reserved = format_amount(day.reserved)
    text = f"today so far: {spent} {day.currency} spent, {reserved} reserved"
    text += " (this request included)" if included else ""
    if after is None or day.limit is None:
        return text + "; no daily limit"
    return text + f"; {format_amount(after)} of the {format_amount(day.limit)} daily limit remains after it"


def day_of(approval: Approval) -> DayFigures | None:
    """The agent's day when the approval was created (this request's reservation included)."""
    day = approval.details.get("day")
    return DayFigures.from_dict(dict(day)) if isinstance(day, Mapping) else None


def approval_notice(approval: Approval, url: str | None) -> dict[str, Any]:
    """The JSON notice for INTERLACE_APPROVAL_NOTIFY_URL: everything a human needs to decide, with the agent's
    own words apart under ``agent_text`` (``untrusted: true``) so a chat bot never renders them as ours."""
    details = approval.details
    day = day_of(approval)
    found = agent_text(details)
    return {
        "event": "approval.pending",
        **approval.as_dict(),
        "approval_url": url,
        "what": what_text(details),
        "payee": details.get("payee"),
        "card_id": details.get("card_id"),
        "card_last_four": details.get("card_last_four"),
        "reasons": approval.reasons,
        "day": None
        if day is None
        else {
            **day.as_dict(),
            "remaining_after": None
            if day.limit is None
            else format_amount(day.remaining_after(Decimal("0")) or Decimal("0")),
            "includes_this_request": True,
        },
        "agent_text": None
        if found is None
        else {"field": found[0], "text": found[1], "untrusted": True, "note": UNTRUSTED_NOTE},
    }
