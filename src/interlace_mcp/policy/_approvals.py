"""Approvals: created with a request above ``approval_above``; decided by a human; expired by time.

An expired approval releases its request's reservation. Expiry is written by the writer (every
reservation sweeps first; :func:`expire_due` also runs on a timer), and readers that show approvals
first check cheaply whether anything is overdue (:func:`any_due`) so they never show a stale one.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from interlace_mcp.money import from_minor, to_minor
from interlace_mcp.policy._db import Row
from interlace_mcp.policy._reservations import refuse_request
from interlace_mcp.policy._rules import approval_denied_text, approval_expired_text
from interlace_mcp.policy._store import Reader, Tx
from interlace_mcp.policy._values import Approval, RequestKey

__all__ = ["any_due", "approval_from_row", "create", "decide", "expire_due", "get", "listing"]

_OVERDUE = "SELECT * FROM approvals WHERE status IN ('pending', 'approved') AND expires_at <= ?"


def approval_from_row(row: Row) -> Approval:
    return Approval(
        id=row["id"],
        agent=row["agent"],
        tool=row["tool"],
        request_id=row["request_id"],
        amount=from_minor(int(row["amount_minor"])),
        currency=row["currency"],
        summary=row["summary"],
        status=row["status"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        decided_at=row["decided_at"],
        decided_by=row["decided_by"],
        reason=row["reason"],
        scope=row["scope"],
    )


def create(tx: Tx, key: RequestKey, amount: Decimal, currency: str, summary: str, ttl: float, now: float) -> str:
    approval_id = "apr_" + secrets.token_hex(10)
    tx.execute(
        "INSERT INTO approvals (id, scope, agent, tool, request_id, amount_minor, currency, summary,"
        " status, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        (approval_id, key.scope, key.agent, key.tool, key.request_id, to_minor(amount), currency, summary, now,
         now + ttl),
    )  # fmt: skip
    return approval_id


def any_due(rx: Reader) -> bool:
    """Whether some approval is past its expiry and not yet expired (a cheap read)."""
    return rx.one(_OVERDUE.replace("SELECT *", "SELECT 1") + " LIMIT 1", (rx.now(),)) is not None


def expire_due(tx: Tx) -> int:
    """Expire overdue approvals and release their requests' reservations; returns how many."""
    now = tx.now()
    expired = 0
    for row in tx.all(_OVERDUE + " ORDER BY id", (now,)):
        expired += 1
        tx.execute("UPDATE approvals SET status = 'expired' WHERE id = ?", (row["id"],))
        text = approval_expired_text(
            row["id"], int(row["amount_minor"]), row["currency"], row["expires_at"], row["status"] == "approved"
        )
        refuse_request(tx, _key(row), "approval_expired", text, now)
    return expired


def decide(tx: Tx, approval_id: str, *, approve: bool, by: str, reason: str | None, ttl: float) -> Approval:
    """A human's decision. Deny releases the reservation at once; approve keeps it for ``ttl`` more seconds.

    Raises KeyError (unknown) or ValueError (already decided, expired or used).
    """
    now = tx.now()
    expire_due(tx)
    row = tx.one("SELECT * FROM approvals WHERE id = ?", (approval_id,))
    if row is None:
        raise KeyError(f"no approval {approval_id!r}")
    if row["status"] != "pending":
        raise ValueError(f"approval {approval_id} is already {row['status']}")
    if approve:
        tx.execute(
            "UPDATE approvals SET status = 'approved', decided_at = ?, decided_by = ?, reason = ?, expires_at = ?"
            " WHERE id = ?",
            (now, by, reason, now + ttl, approval_id),
        )
    else:
        tx.execute(
            "UPDATE approvals SET status = 'denied', decided_at = ?, decided_by = ?, reason = ? WHERE id = ?",
            (now, by, reason, approval_id),
        )
        text = approval_denied_text(row["id"], int(row["amount_minor"]), row["currency"], by, reason)
        refuse_request(tx, _key(row), "approval_denied", text, now)
    updated = tx.one("SELECT * FROM approvals WHERE id = ?", (approval_id,))
    return approval_from_row(updated)


def get(rx: Reader, approval_id: str) -> Approval | None:
    row = rx.one("SELECT * FROM approvals WHERE id = ?", (approval_id,))
    return approval_from_row(row) if row else None


def listing(rx: Reader, *, status: str | None = "pending", agent: str | None = None) -> list[Approval]:
    sql = "SELECT * FROM approvals WHERE 1 = 1"
    params: list[Any] = []
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    if agent is not None:
        sql += " AND agent = ?"
        params.append(agent)
    return [approval_from_row(row) for row in rx.all(sql + " ORDER BY created_at", params)]


def _key(row: Row) -> RequestKey:
    return RequestKey(row["scope"], row["agent"], row["tool"], row["request_id"])
