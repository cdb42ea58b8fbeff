"""Helpers several toolsets share: ownership checks, card results, currency checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from interlace_mcp.client import Card, CardDetails, CardSummary, InterlaceError, NotFoundError
from interlace_mcp.money import format_amount
from interlace_mcp.policy import CardRecord, RequestKey
from interlace_mcp.tools._errors import Refusal, not_found
from interlace_mcp.tools._flow import in_thread
from interlace_mcp.tools._results import CardLimit, CardResult
from interlace_mcp.tools._runtime import Runtime
from interlace_mcp.tools._sanitize import clean_text

__all__ = ["card_result", "check_currency", "owned_card"]


async def owned_card(rt: Runtime, agent: str, card_id: str, *, request: tuple[str, str] | None = None) -> CardRecord:
    """This agent's live card, or the same not_found refusal an unknown id gets.

    With ``request=(tool, request_id)``, a card closed since is still accepted when that request is
    already known, so a retry replays its stored outcome instead of "not found".
    """
    record = await in_thread(rt.ledger.owned_card, rt.scope, agent, card_id, include_deleted=request is not None)
    if record is None:
        raise not_found("card", card_id)
    if record.deleted_at is not None and request is not None:
        known = await in_thread(rt.ledger.get_request, RequestKey(rt.scope, agent, request[0], request[1]))
        if known is None:
            raise not_found("card", card_id)
    return record


def check_currency(currency: str, expected: str = "USD", *, what: str = "Interlace cards") -> None:
    if currency != expected:
        raise Refusal.one(
            "validation_error",
            f"currency {currency} is not supported here: {what} use {expected} only; nothing was changed",
            field="currency",
        )


def card_result(
    rt: Runtime,
    card: Card,
    *,
    summary: CardSummary | None = None,
    record: CardRecord | None = None,
    details: CardDetails | None = None,
    status: str | None = None,
    balance: str | None = None,
) -> CardResult:
    """The card object of DESIGN section 6: masked unless ``details`` (an allowed reveal) is given."""
    limits = [
        CardLimit(
            window=limit.type,
            amount=format_amount(limit.value) if limit.value is not None else "none",
            currency=limit.currency or card.currency or "USD",
        )
        for limit in card.transaction_limits
        if limit.type != "NA"
    ]
    number: str | None = None
    cvv: str | None = None
    if details is not None:
        number, cvv = details.reveal()
    if balance is None and summary is not None:
        balance = format_amount(summary.balance.available)
    last_four = card.card_last_four
    if last_four is not None and (len(last_four) != 4 or not last_four.isdigit()):
        last_four = None  # never pass on more than four digits, whatever upstream sent
    return CardResult(
        card_id=card.id,
        card_status=status or card.status or "UNKNOWN",
        last_four=last_four,
        expiry=details.expiry_date if details is not None else None,
        balance=balance,
        currency=card.currency or "USD",
        label=clean_text(card.label or (record.label if record else None), 50) or None,
        limits=limits,
        frozen_by=record.frozen_by if record else None,
        card_number=number,
        cvv=cvv,
        sandbox=rt.sandbox,
    )


async def fetch_card(rt: Runtime, card_id: str) -> tuple[Card, CardSummary]:
    """Card and its summary from Interlace (two reads, in parallel); an id Interlace no longer knows is not found."""
    found: dict[str, Any] = {}

    async def read(name: str, call: Callable[[str], Awaitable[Any]]) -> None:
        found[name] = await call(card_id)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read, "card", rt.api.get_card)
            tg.start_soon(read, "summary", rt.api.get_card_summary)
    except BaseExceptionGroup as group:
        # Callers handle plain client errors (unknown outcome, not found...): pass on the first one as is.
        first = group.exceptions[0]
        if isinstance(first, NotFoundError):
            raise not_found("card", card_id) from None
        raise first from None
    return found["card"], found["summary"]


async def card_after_movement(
    rt: Runtime, card_id: str, record: CardRecord | None, warnings: list[str]
) -> CardResult | None:
    """The card object for a completed movement, best effort: the money already moved, so a failed read
    is a warning on a completed result, never a reason to fail (or retry) the movement."""
    try:
        card, summary = await fetch_card(rt, card_id)
    except (InterlaceError, Refusal) as exc:
        warnings.append(f"the movement completed, but the card could not be read afterwards ({exc}); use get_card")
        return None
    return card_result(rt, card, summary=summary, record=record)


def as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}
