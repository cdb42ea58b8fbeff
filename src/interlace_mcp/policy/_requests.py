"""Request records: new, replay, resume or conflict -- and for a new one every rule checked and the amount
reserved in the same transaction (a concurrent call can never push a total past a limit).

A request that executes holds a *lease* (``lease_until``): while it is live, a retry of the same
request never executes it a second time concurrently -- in this process or any other sharing the
database -- it is told the request is busy. The lease ends with the execution (completed, released,
or left in progress for a later retry); a lease of a process that died simply runs out.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from interlace_mcp.money import from_minor, to_minor
from interlace_mcp.policy import _approvals as approvals
from interlace_mcp.policy._cards import frozen
from interlace_mcp.policy._db import Row
from interlace_mcp.policy._funding import fund_violations, reserve_fund
from interlace_mcp.policy._policy import AgentPolicy
from interlace_mcp.policy._reservations import card_violations, reserve, settle_entry, window_violations
from interlace_mcp.policy._rules import frozen_violation
from interlace_mcp.policy._store import Reader, Tx
from interlace_mcp.policy._values import BeginResult, Refusal, RequestConflict, RequestKey, RequestRecord, Violation

__all__ = [
    "REQUEST_RETENTION_SECONDS",
    "Precheck",
    "abandon",
    "begin",
    "complete",
    "completed_requests",
    "evaluate",
    "find_requests",
    "get_request",
    "open_requests",
    "precheck",
    "purge_old_requests",
    "release_lease",
    "save_progress",
    "start_approved",
]

#: How long request records are kept (Interlace keeps idempotency keys 90 days).
REQUEST_RETENTION_SECONDS = 90 * 24 * 3600

_WHERE_KEY = " WHERE scope = ? AND agent = ? AND tool = ? AND request_id = ?"
_USE_APPROVAL = "UPDATE approvals SET status = 'used' WHERE id = ? AND status = 'approved'"


def _params(key: RequestKey) -> tuple[str, str, str, str]:
    return (key.scope, key.agent, key.tool, key.request_id)


def _record(rx: Reader, row: Row, key: RequestKey | None = None) -> RequestRecord:
    approval = None
    if row["approval_id"]:
        approval = approvals.get(rx, row["approval_id"])
    return RequestRecord(
        key=key or RequestKey(row["scope"], row["agent"], row["tool"], row["request_id"]),
        args_hash=row["args_hash"],
        status=row["status"],
        amount=from_minor(int(row["amount_minor"])),
        currency=row["currency"],
        entry_id=row["entry_id"],
        approval_id=row["approval_id"],
        keys=json.loads(row["keys_json"]),
        progress=json.loads(row["progress_json"]),
        result=json.loads(row["result_json"]) if row["result_json"] else None,
        card_id=row["card_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        approval=approval,
        args=json.loads(row["args_json"] or "{}"),
        lease_until=float(row["lease_until"] or 0),
    )


def get_request(rx: Reader, key: RequestKey) -> RequestRecord | None:
    row = rx.one("SELECT * FROM requests" + _WHERE_KEY, _params(key))
    return _record(rx, row, key) if row is not None else None


def begin(
    tx: Tx,
    key: RequestKey,
    *,
    args_hash: str,
    policy: AgentPolicy,
    spend: Decimal,
    currency: str,
    issues_card: bool = False,
    stateless_violations: Sequence[Violation] = (),
    needs_approval: bool = False,
    approval_summary: str = "",
    approval_ttl: float = 900.0,
    steps: Sequence[str] = ("main",),
    progress: dict[str, Any] | None = None,
    card_id: str | None = None,
    args: dict[str, Any] | None = None,
    lease: float = 0.0,
    kill_switch: bool = False,
    fund: Decimal = Decimal(0),
    approval_reasons: Sequence[str] = (),
    approval_details: Mapping[str, Any] | None = None,
    daily_approval: bool = False,
    recheck: Sequence[Violation] = (),
    fallback_reasons: Sequence[str] = (),
) -> BeginResult:
    """New request, replay, resume or conflict -- and for a new one: check every rule and reserve, atomically.

    Raises :class:`RequestConflict` for a known request_id with other arguments, and :class:`Refusal`
    (nothing stored) when any rule is broken. With ``lease`` (seconds) the caller means to execute: a
    new executing request, an approved one, or one left in progress is leased to it (``started``),
    unless another execution holds it (``busy``). ``kill_switch``: read the agent's freeze in this
    transaction too (a frozen agent starts nothing, new or known). ``fund``: an amount moved into the
    Infinity account (not spend), checked against and reserved in the funding window instead.
    ``approval_reasons`` say why a human must approve (with ``needs_approval``); ``daily_approval``:
    ``approval_daily_above`` applies, checked here with the windows. An approved request about
    to start is checked again against ``policy`` (``recheck``: the rules the caller found broken now)
    and refused -- released, stored -- when it tightened. ``fallback_reasons``: why a human must approve a new
    request when nothing else here says so (a confirmation-band call whose question was skipped because
    approval looked needed when the caller read the day: never executed unconfirmed).
    """
    now = tx.now()
    approvals.expire_due(tx)
    existing = get_request(tx, key)
    stopped = frozen(tx, key.agent) if kill_switch else None
    if existing is not None:
        if existing.args_hash != args_hash:
            raise RequestConflict(key.tool, key.request_id)
        if existing.status in ("completed", "refused") or lease <= 0:
            return BeginResult(existing, is_new=False)
        if stopped is not None:
            raise Refusal([v for v in (frozen_violation(key.agent, stopped),) if v is not None])
        approved = existing.approval is not None and existing.approval.status == "approved"
        if existing.status == "pending_approval" and not approved:
            return BeginResult(existing, is_new=False)
        if existing.status == "executing" and existing.lease_until > now:
            return BeginResult(existing, is_new=False, busy=True)
        resumed = existing.status == "executing"
        if not resumed:
            tightened = approvals.execution_violations(
                tx, existing, policy, recheck, issues_card=issues_card, fund=fund > 0
            )
            if tightened:
                approvals.refuse_at_execution(tx, existing, tightened)
                refused = get_request(tx, key)
                assert refused is not None
                return BeginResult(refused, is_new=False)
            tx.execute(
                "UPDATE approvals SET status = 'used' WHERE id = ? AND status = 'approved'", (existing.approval_id,)
            )
        tx.execute(
            "UPDATE requests SET status = 'executing', lease_until = ?, updated_at = ?" + _WHERE_KEY,
            (now + lease, now, *_params(key)),
        )
        started = get_request(tx, key)
        assert started is not None
        return BeginResult(started, is_new=False, started=True, resumed=resumed)

    violations = list(stateless_violations)
    if stopped is not None and not any(v.code == "agent_frozen" for v in violations):
        violations += [v for v in (frozen_violation(key.agent, stopped),) if v is not None]
    violations += stateful_violations(tx, key, policy, spend, currency, fund, issues_card=issues_card, now=now)
    if violations:
        raise Refusal(violations)
    reasons = approvals.reasons_for(
        tx, key, policy, spend, currency, asked=approval_reasons if needs_approval else (), daily=daily_approval
    ) or list(fallback_reasons)
    entry_id = None
    if spend > 0:
        entry_id = reserve(tx, key, spend, currency, policy, now)
    elif fund > 0:
        entry_id = reserve_fund(tx, key, fund, policy, now)
    held = spend if spend > 0 else fund
    approval_id = None
    status = "executing"
    if needs_approval or reasons:
        approval_id = approvals.open_for(
            tx, key, policy, held, currency, approval_summary, approval_ttl, now, reasons=reasons,
            details=approval_details,
        )  # fmt: skip
        status = "pending_approval"
    keys = {step: str(uuid.uuid4()) for step in steps}
    args_json = json.dumps(args or {}, default=str)
    lease_until = now + lease if (lease > 0 and status == "executing") else 0.0
    tx.execute(
        "INSERT INTO requests (scope, agent, tool, request_id, args_hash, status, amount_minor, currency,"
        " entry_id, approval_id, keys_json, progress_json, card_id, created_at, updated_at, args_json, lease_until)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            *_params(key), args_hash, status, to_minor(held), currency, entry_id, approval_id, json.dumps(keys),
            json.dumps(progress or {}), card_id, now, now, args_json, lease_until,
        ),
    )  # fmt: skip
    record = RequestRecord(
        key=key,
        args_hash=args_hash,
        status=status,
        amount=from_minor(to_minor(held)),
        currency=currency,
        entry_id=entry_id,
        approval_id=approval_id,
        keys=keys,
        progress=dict(progress or {}),
        result=None,
        card_id=card_id,
        created_at=now,
        updated_at=now,
        approval=approvals.get(tx, approval_id) if approval_id is not None else None,
        args=json.loads(args_json),
        lease_until=lease_until,
    )
    return BeginResult(record, is_new=True, started=lease > 0 and status == "executing")


@dataclass(frozen=True)
class Precheck:
    """A read-only look at what :func:`begin` would decide (nothing is written or reserved)."""

    frozen: tuple[str | None, str | None] | None
    record: RequestRecord | None
    violations: list[Violation]


def precheck(
    rx: Reader,
    key: RequestKey,
    *,
    policy: AgentPolicy,
    spend: Decimal,
    currency: str,
    issues_card: bool = False,
    fund: Decimal = Decimal(0),
) -> Precheck:
    """The kill switch, the request if it is known, and -- for a new one -- the stateful rules it breaks."""
    stopped = frozen(rx, key.agent)
    record = get_request(rx, key)
    violations: list[Violation] = []
    if record is None:
        violations = stateful_violations(rx, key, policy, spend, currency, fund, issues_card=issues_card, now=rx.now())
    return Precheck(stopped, record, violations)


def evaluate(
    rx: Reader,
    key: RequestKey,
    *,
    policy: AgentPolicy,
    spend: Decimal,
    currency: str,
    issues_card: bool = False,
    stateless_violations: Sequence[Violation] = (),
    fund: Decimal = Decimal(0),
) -> list[Violation]:
    """What :func:`begin` would refuse for, without writing anything (dry runs)."""
    return [
        *stateless_violations,
        *stateful_violations(rx, key, policy, spend, currency, fund, issues_card=issues_card, now=rx.now()),
    ]


def stateful_violations(
    rx: Reader,
    key: RequestKey,
    policy: AgentPolicy,
    spend: Decimal,
    currency: str,
    fund: Decimal,
    *,
    issues_card: bool,
    now: float,
) -> list[Violation]:
    """The rules that depend on what is stored: the calendar windows, the funding window, the card slots."""
    violations = window_violations(rx, key, policy, spend, currency, now)
    violations += fund_violations(rx, key, policy, fund, now)
    if issues_card:
        violations += card_violations(rx, key, policy)
    return violations


def start_approved(tx: Tx, key: RequestKey) -> RequestRecord:
    """If the request's approval was granted, mark it used and the request executing."""
    now = tx.now()
    approvals.expire_due(tx)
    record = get_request(tx, key)
    if record is None:
        raise KeyError(key)
    if record.status == "pending_approval" and record.approval and record.approval.status == "approved":
        tx.execute("UPDATE approvals SET status = 'used' WHERE id = ? AND status = 'approved'", (record.approval_id,))
        tx.execute(
            "UPDATE requests SET status = 'executing', updated_at = ?"
            + _WHERE_KEY
            + " AND status = 'pending_approval'",
            (now, *_params(key)),
        )
        record = get_request(tx, key)
        assert record is not None
    return record


def save_progress(tx: Tx, key: RequestKey, progress: dict[str, Any], *, card_id: str | None = None) -> None:
    """Durably note how far a multi-step request got."""
    tx.execute(
        "UPDATE requests SET progress_json = ?, card_id = COALESCE(?, card_id), updated_at = ?" + _WHERE_KEY,
        (json.dumps(progress), card_id, tx.now(), *_params(key)),
    )


def complete(
    tx: Tx,
    key: RequestKey,
    result: dict[str, Any],
    *,
    progress: dict[str, Any] | None = None,
    card_id: str | None = None,
) -> RequestRecord:
    """Success: commit the reservation, store the result for replays, end the lease."""
    now = tx.now()
    record = get_request(tx, key)
    if record is None:
        raise KeyError(key)
    if record.status == "completed":
        return record
    if record.entry_id is not None:
        settle_entry(tx, record.entry_id, "committed", now)
    progress = progress if progress is not None else record.progress
    tx.execute(
        "UPDATE requests SET status = 'completed', result_json = ?, progress_json = ?,"
        " card_id = COALESCE(?, card_id), lease_until = 0, updated_at = ?" + _WHERE_KEY,
        (json.dumps(result), json.dumps(progress), card_id, now, *_params(key)),
    )
    return replace(
        record,
        status="completed",
        result=result,
        progress=dict(progress),
        card_id=card_id or record.card_id,
        lease_until=0.0,
        updated_at=now,
    )


def abandon(tx: Tx, key: RequestKey) -> None:
    """Definite failure upstream: release the reservation and forget the request.

    Like a policy refusal, a definite failure is not stored: the agent may fix the cause and retry
    with the same request_id (new upstream keys are generated; nothing moved before).
    """
    now = tx.now()
    record = get_request(tx, key)
    if record is None or record.status == "completed":
        return
    if record.entry_id is not None:
        settle_entry(tx, record.entry_id, "released", now)
    tx.execute("DELETE FROM requests" + _WHERE_KEY, _params(key))


def release_lease(tx: Tx, key: RequestKey) -> None:
    """The execution ends without an outcome (unknown upstream): the request stays open for a retry."""
    tx.execute("UPDATE requests SET lease_until = 0, updated_at = ?" + _WHERE_KEY, (tx.now(), *_params(key)))


def open_requests(rx: Reader, scope: str | None = None) -> list[RequestRecord]:
    """Requests whose upstream outcome is not settled yet (for recovery)."""
    rows = rx.all(
        "SELECT * FROM requests WHERE status = 'executing'" + (" AND scope = ?" if scope else ""),
        (scope,) if scope else (),
    )
    return [_record(rx, row) for row in rows]


def completed_requests(rx: Reader, scope: str, since: float | None = None) -> list[RequestRecord]:
    """Completed requests of one upstream (optionally updated since an epoch time), oldest first."""
    sql = "SELECT * FROM requests WHERE scope = ? AND status = 'completed'"
    params: list[Any] = [scope]
    if since is not None:
        sql += " AND updated_at >= ?"
        params.append(since)
    return [_record(rx, row) for row in rx.all(sql + " ORDER BY updated_at", params)]


def find_requests(rx: Reader, scope: str, agent: str, request_id: str) -> list[RequestRecord]:
    """Every tool's record for one of this agent's request ids, newest first."""
    rows = rx.all(
        "SELECT * FROM requests WHERE scope = ? AND agent = ? AND request_id = ? ORDER BY updated_at DESC",
        (scope, agent, request_id),
    )
    return [_record(rx, row) for row in rows]


def purge_old_requests(tx: Tx, retention: float = REQUEST_RETENTION_SECONDS) -> int:
    """Drop settled request records older than the retention period; returns how many."""
    cutoff = tx.now() - retention
    cur = tx.execute("DELETE FROM requests WHERE status IN ('completed', 'refused') AND updated_at < ?", (cutoff,))
    return cur.rowcount
