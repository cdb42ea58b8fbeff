"""Approvals: created with a request above ``approval_above``; decided by a human; expired by time.

An expired approval releases its request's reservation. Expiry is written by the writer (every
reservation sweeps first; :func:`expire_due` also runs on a timer), and readers that show approvals
first check cheaply whether anything is overdue (:func:`any_due`) so they never show a stale one.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from interlace_mcp.money import from_minor, to_minor
from interlace_mcp.policy._db import Row
from interlace_mcp.policy._funding import held_fund_violations
from interlace_mcp.policy._policy import AgentPolicy
from interlace_mcp.policy._reservations import (
    day_figures,
    held_card_violations,
    held_window_violations,
    refuse_request,
    settle_entry,
    totals,
)
from interlace_mcp.policy._rules import approval_denied_text, approval_expired_text, daily_approval_reason
from interlace_mcp.policy._store import Reader, Tx
from interlace_mcp.policy._values import Approval, Refusal, RequestKey, RequestRecord, Violation
from interlace_mcp.policy._windows import window_keys

__all__ = [
    "any_due",
    "approval_from_row",
    "create",
    "decide",
    "execution_violations",
    "expire_due",
    "get",
    "listing",
    "open_for",
    "reasons_for",
    "refuse_at_execution",
]

#: When a caller says a request needs approval without saying why.
GENERIC_REASON = "this agent's policy asks a human to approve it"

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
        details=_details(row),
    )


def _details(row: Row) -> dict[str, Any]:
    try:
        raw = row["details_json"]
    except (IndexError, KeyError):  # a row read before migration 3 (never in a migrated database)
        return {}
    try:
        found = json.loads(raw or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def create(
    tx: Tx,
    key: RequestKey,
    amount: Decimal,
    currency: str,
    summary: str,
    ttl: float,
    now: float,
    *,
    details: Mapping[str, Any] | None = None,
) -> str:
    """A pending approval. ``details``: what a human needs to decide (tool, payee or card, the agent's memo or
    label under ``agent_text``, ``reasons``, the agent's ``day``, the payee account it binds)."""
    approval_id = "apr_" + secrets.token_hex(10)
    tx.execute(
        "INSERT INTO approvals (id, scope, agent, tool, request_id, amount_minor, currency, summary,"
        " status, created_at, expires_at, details_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
        (approval_id, key.scope, key.agent, key.tool, key.request_id, to_minor(amount), currency, summary, now,
         now + ttl, json.dumps(dict(details or {}), default=str)),
    )  # fmt: skip
    return approval_id


def reasons_for(
    rx: Reader,
    key: RequestKey,
    policy: AgentPolicy,
    spend: Decimal,
    currency: str,
    *,
    asked: Sequence[str],
    daily: bool,
) -> list[str]:
    """Why a new request needs a human: what the caller found (``asked``: approval_above, the confirmation
    band), and -- read in the reserving transaction, so splitting never dodges it -- approval_daily_above."""
    reasons = list(asked)
    if daily and policy.approval_daily_above is not None:
        day = window_keys(rx.now(), policy.zone).day
        reserved, committed = totals(rx, key.scope, key.agent, currency, "day", day)
        found = daily_approval_reason(policy, spend, currency, spent_minor=committed, reserved_minor=reserved)
        if found is not None:
            reasons.append(found)
    return reasons


def open_for(
    tx: Tx,
    key: RequestKey,
    policy: AgentPolicy,
    spend: Decimal,
    currency: str,
    summary: str,
    ttl: float,
    now: float,
    *,
    reasons: Sequence[str],
    details: Mapping[str, Any] | None,
) -> str:
    """The approval of a request just reserved: with why, and the agent's day as the human will see it."""
    day = day_figures(tx, key.scope, key.agent, policy, currency, now)
    info = {
        **dict(details or {}),
        "reasons": list(reasons) or [GENERIC_REASON],
        "day": day.as_dict(),  # this request's reservation included
    }
    return create(tx, key, spend, currency, summary, ttl, now, details=info)


def execution_violations(
    tx: Tx,
    record: RequestRecord,
    policy: AgentPolicy,
    recheck: Sequence[Violation],
    *,
    issues_card: bool,
    fund: bool = False,
) -> list[Violation]:
    """An approved request about to execute, checked against the CURRENT policy: what the caller found
    (payee still allowed and at the approved account, per-transaction) and the windows (and card slots)
    with this request's own reservation counted once -- for funding (``fund``), its own daily window."""
    found = [v for v in recheck if v.code != "agent_frozen"]  # the kill switch is checked on its own
    if fund:
        found += held_fund_violations(tx, record.key, policy, record.entry_id, record.amount, tx.now())
    else:
        found += held_window_violations(
            tx, record.key, policy, record.entry_id, record.amount, record.currency, tx.now()
        )
    if issues_card:
        found += held_card_violations(tx, record.key, policy)
    return found


def refuse_at_execution(tx: Tx, record: RequestRecord, violations: Sequence[Violation]) -> None:
    """The policy tightened since the approval: release the reservation, use up the approval, and store the
    refusal (a retry of the request gets it again; a new request_id asks again)."""
    now = tx.now()
    if record.entry_id is not None:
        settle_entry(tx, record.entry_id, "released", now)
    refusal = Refusal(violations)
    text = (
        str(refusal).removeprefix(f"[{refusal.code}] ")
        + f"; the policy changed after approval {record.approval_id}, so nothing moved and the reservation was"
        " released. Send a new request (new request_id) if it is still needed"
    )
    key = record.key
    tx.execute(
        "UPDATE requests SET status = 'refused', result_json = ?, lease_until = 0, updated_at = ?"
        " WHERE scope = ? AND agent = ? AND tool = ? AND request_id = ?",
        (json.dumps({"code": refusal.code, "message": text}), now, key.scope, key.agent, key.tool, key.request_id),
    )
    if record.approval_id is not None:
        tx.execute("UPDATE approvals SET status = 'used' WHERE id = ? AND status = 'approved'", (record.approval_id,))


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
