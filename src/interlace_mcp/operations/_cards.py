"""Cards as results: the masked card object, transactions in words, currency checks, and what is known of
each card between reads.

The card object of a result is built from two upstream answers: the card (status, last four, label,
limits) and its summary (balance, velocity). After a movement one of them may be known already -- see
:func:`card_after_movement` for when that is provably current.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from interlace_mcp.client import (
    DECLINE_REASONS,
    Card,
    CardDetails,
    CardSummary,
    CardTransaction,
    InterlaceClient,
    InterlaceError,
    NotFoundError,
    TransactionLimit,
    describe_decline,
    wire_time,
)
from interlace_mcp.money import format_amount
from interlace_mcp.operations._refusals import not_found, upstream_code, upstream_ref, upstream_word
from interlace_mcp.operations._results import CardLimit, CardResult, TransactionInfo
from interlace_mcp.operations._sanitize import clean_text
from interlace_mcp.policy import CardRecord, Refusal, cards, epoch_to_iso, iso_utc

__all__ = [
    "TRANSACTION_TYPES",
    "CardCache",
    "card_after_movement",
    "card_result",
    "check_currency",
    "closed_card_result",
    "decline_words",
    "fetch_card",
    "issuer_text",
    "transaction_info",
]

TRANSACTION_TYPES = {
    0: "credit",
    1: "authorization",
    2: "transfer_in",
    3: "transfer_out",
    9: "fee",
    10: "declined_fee",
}


class CardCache:
    """The last card object read from Interlace per card id (this process; bounded).

    Only the fields that never change or that this server sets are ever taken from it without a read:
    id, currency, last four and label. Status, balance and limits always come from a fresh answer.
    """

    def __init__(self, size: int = 4096, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._clock = clock
        self._cards: dict[str, Card] = {}

    def get(self, card_id: str) -> Card | None:
        return self._cards.get(card_id)

    def put(self, card: Card) -> None:
        self._cards.pop(card.id, None)
        self._cards[card.id] = card
        while len(self._cards) > self._size:
            del self._cards[next(iter(self._cards))]  # the oldest entry

    def forget(self, card_id: str) -> None:
        self._cards.pop(card_id, None)


def check_currency(currency: str, expected: str = "USD", *, what: str = "Interlace cards") -> None:
    if currency != expected:
        raise Refusal.one(
            "validation_error",
            f"currency {currency} is not supported here: {what} use {expected} only; nothing was changed",
            field="currency",
        )


def card_result(
    card: Card,
    *,
    sandbox: bool,
    summary: CardSummary | None = None,
    record: CardRecord | None = None,
    details: CardDetails | None = None,
    status: str | None = None,
    balance: str | None = None,
    limits: list[TransactionLimit] | None = None,
) -> CardResult:
    """The card object of DESIGN section 6: masked unless ``details`` (an allowed reveal) is given."""
    card_limits = [
        CardLimit(
            window=upstream_code(limit.type, "UNKNOWN"),
            amount=format_amount(limit.value) if limit.value is not None else "none",
            currency=upstream_code(limit.currency or card.currency, "USD"),
        )
        for limit in (card.transaction_limits if limits is None else limits)
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
        card_status=status or upstream_code(card.status, "UNKNOWN"),
        last_four=last_four,
        expiry=details.expiry_date if details is not None else None,
        balance=balance,
        currency=upstream_code(card.currency, "USD"),
        label=clean_text(card.label or (record.label if record else None), 50) or None,
        limits=card_limits,
        frozen_by=record.frozen_by if record else None,
        card_number=number,
        cvv=cvv,
        sandbox=sandbox,
        **_terms(record, closed=False),
    )


def _terms(record: CardRecord | None, *, closed: bool) -> dict[str, Any]:
    """What the server does with the card by itself (single-use, expiry) and why it closed it, if it did."""
    if record is None:
        return {}
    reason = cards.CLOSE_REASONS.get(record.closed_reason or "", record.closed_reason)
    return {
        "single_use": record.single_use,
        "expires_at": epoch_to_iso(record.expires_at),
        "closed_reason": reason if closed else None,
    }


def closed_card_result(record: CardRecord, *, sandbox: bool) -> CardResult:
    """A card Interlace no longer shows (closed, or being closed by the server): what the ledger knows of it,
    DELETED with nothing left on it."""
    return CardResult(
        card_id=record.card_id,
        card_status="DELETED",
        last_four=record.last_four,
        balance="0.00",
        currency="USD",
        label=clean_text(record.label, 50) or None,
        frozen_by=record.frozen_by,
        sandbox=sandbox,
        **_terms(record, closed=True),
    )


async def fetch_card(client: InterlaceClient, card_id: str, cache: CardCache | None = None) -> tuple[Card, CardSummary]:
    """Card and its summary from Interlace (two reads, in parallel); an id Interlace no longer knows is not found."""
    found: dict[str, Any] = {}

    async def read(name: str, call: Callable[[str], Awaitable[Any]]) -> None:
        found[name] = await call(card_id)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read, "card", client.get_card)
            tg.start_soon(read, "summary", client.get_card_summary)
    except BaseExceptionGroup as group:
        # Callers handle plain client errors (unknown outcome, not found...): pass on the first one as is.
        first = group.exceptions[0]
        if isinstance(first, NotFoundError):
            if cache is not None:
                cache.forget(card_id)
            raise not_found("card", card_id) from None
        raise first from None
    card: Card = found["card"]
    if cache is not None:
        cache.put(card)
    return card, found["summary"]


def _velocity_limits(card: Card, summary: CardSummary) -> list[TransactionLimit]:
    """The card's velocity control as the summary reports it now."""
    control = summary.velocity_control
    if control is None or not control.type or control.limit is None:
        return []
    return [TransactionLimit(type=control.type, value=control.limit, currency=card.currency or "USD")]


async def card_after_movement(
    client: InterlaceClient,
    cache: CardCache,
    card_id: str,
    record: CardRecord | None,
    warnings: list[str],
    *,
    sandbox: bool,
    loaded: bool = False,
) -> CardResult | None:
    """The card object for a completed movement, best effort: the money already moved, so a failed read is
    a warning on a completed result, never a reason to fail (or retry) the movement.

    ``loaded``: the movement was a transfer-in, which Interlace accepts only on an ACTIVE card. Then ONE
    read suffices: the summary (balance and velocity, current by definition), and from the card only what
    never changes or what this server set (id, currency, last four, label), with the status the accepted
    load proves. Otherwise (or without a known card) both are read, in parallel.
    """
    known = cache.get(card_id) if loaded else None
    try:
        if known is not None:
            summary = await client.get_card_summary(card_id)
            return card_result(
                known,
                sandbox=sandbox,
                summary=summary,
                record=record,
                status="ACTIVE",
                limits=_velocity_limits(known, summary),
            )
        card, summary = await fetch_card(client, card_id, cache)
    except (InterlaceError, Refusal) as exc:
        why = upstream_ref(exc) if isinstance(exc, InterlaceError) else f" ([{exc.code}])"
        warnings.append(f"the movement completed, but the card could not be read afterwards{why}; use get_card")
        return None
    return card_result(card, sandbox=sandbox, summary=summary, record=record)


#: decline_reason of a decline whose code this server does not know (Interlace's own words: issuer_text).
UNKNOWN_DECLINE = "declined by the card issuer (no reason code this server knows)"


def decline_words(txn: CardTransaction) -> tuple[str | None, str | None]:
    """(code, reason) of a declined transaction: Interlace's code and plain words an agent can act on
    (fraud-related codes only ever read "declined by the issuer's risk checks"); (None, None) otherwise.
    The reason is always the server's own sentence; Interlace's text is :func:`issuer_text`."""
    if txn.status != "FAIL":
        return None, None
    code = _decline_code(txn)
    described = describe_decline(code)
    if described is not None:
        return code, described.reason
    return None, UNKNOWN_DECLINE


def _decline_code(txn: CardTransaction) -> str | None:
    """The decline code when it is code-shaped (an unknown one is repeated in a sentence of ours), else None."""
    code = clean_text(txn.decline_code, 16) or None
    return code if code is not None and upstream_word(code) == code else None


def issuer_text(txn: CardTransaction) -> str | None:
    """Interlace's own description of a decline whose code this server has no words for: untrusted text from
    outside, returned only in the ``issuer_text`` field (never inside a sentence of ours)."""
    if txn.status != "FAIL" or _decline_code(txn) in DECLINE_REASONS:
        return None
    return clean_text(txn.remark) or None


def transaction_info(txn: CardTransaction) -> TransactionInfo:
    declined = txn.status == "FAIL"
    code, reason = decline_words(txn)
    return TransactionInfo(
        transaction_id=txn.id,
        type=TRANSACTION_TYPES.get(txn.type, f"type_{txn.type}"),
        status=upstream_code(txn.status, "UNKNOWN"),
        approved=not declined,
        decline_code=code,
        decline_reason=reason,
        amount=format_amount(txn.amount),
        fee=format_amount(txn.fee) if txn.fee is not None else None,
        currency=upstream_code(txn.currency, "USD"),
        merchant=clean_text(txn.merchant_name),
        mcc=clean_text(txn.mcc, 8),
        created_at=iso_utc(wire_time(txn.create_time)),
        client_transaction_id=txn.client_transaction_id,
        issuer_text=issuer_text(txn),
    )
