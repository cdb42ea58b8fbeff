"""What cards actually did at merchants, as Interlace's webhooks report it (de-duplicated, order-safe)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from interlace_mcp.money import from_minor, to_minor
from interlace_mcp.policy._store import Reader, Tx

__all__ = ["card_activity", "record_card_event"]

_RANK = {"PENDING": 0, "CLOSED": 1, "FAIL": 1}


def record_card_event(
    tx: Tx,
    event_id: str,
    event_type: str,
    *,
    scope: str,
    transaction_id: str,
    card_id: str,
    type_code: int,
    status: str,
    amount: Decimal,
    currency: str,
    merchant: str | None,
    remark: str | None,
    event_time: float,
) -> bool:
    """Record one notification once (de-duplicated by its id); returns False for a duplicate.

    Out-of-order delivery converges: a final status (CLOSED/FAIL) is never overwritten by an
    earlier PENDING, and otherwise the newest event time wins.
    """
    now = tx.now()
    cur = tx.execute(
        "INSERT INTO webhook_events (id, event_type, received_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
        (event_id, event_type, now),
    )
    if cur.rowcount == 0:
        return False  # a duplicate (possibly delivered to another instance at the same moment)
    row = tx.one(
        "SELECT status, event_time FROM card_activity WHERE scope = ? AND transaction_id = ?", (scope, transaction_id)
    )
    if row is not None:
        newer = (_RANK.get(status, 0), event_time) >= (_RANK.get(row["status"], 0), row["event_time"])
        if not newer:
            return True
    tx.execute(
        "INSERT INTO card_activity (scope, transaction_id, card_id, type, status, amount_minor, currency,"
        " merchant, remark, event_time, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (scope, transaction_id) DO UPDATE SET status = excluded.status,"
        " amount_minor = excluded.amount_minor, merchant = excluded.merchant, remark = excluded.remark,"
        " event_time = excluded.event_time, updated_at = excluded.updated_at",
        (
            scope, transaction_id, card_id, type_code, status, to_minor(amount.quantize(Decimal("0.01"))),
            currency, merchant, remark, event_time, now,
        ),
    )  # fmt: skip
    return True


def card_activity(rx: Reader, scope: str, card_ids: Sequence[str], since: float) -> dict[str, Any]:
    """Merchant authorizations on these cards since ``since`` (from webhooks): approved sum, declines."""
    if not card_ids:
        return {"authorized": Decimal("0.00"), "approved": 0, "declined": 0}
    marks = ",".join("?" for _ in card_ids)
    rows = rx.all(
        f"SELECT status, amount_minor FROM card_activity WHERE scope = ? AND type = 1 AND event_time >= ?"
        f" AND card_id IN ({marks})",
        (scope, since, *card_ids),
    )
    approved = [r for r in rows if r["status"] != "FAIL"]
    return {
        "authorized": from_minor(sum(int(r["amount_minor"]) for r in approved)),
        "approved": len(approved),
        "declined": len(rows) - len(approved),
    }
