"""The spend ledger: reservations, request records, approvals, card ownership, the kill switch.

Storage is SQLite (one host; WAL, ``synchronous=FULL``) or PostgreSQL (several instances), chosen by the
database URL; the SQL is the same for both, the dialects' differences live in :mod:`._db`. Every public
method is one transaction, and the connection is guarded by a thread lock.

Locking (why it is safe, in one process or several):

- SQLite: every transaction starts with ``BEGIN IMMEDIATE``, which takes SQLite's write lock, so all
  writers on the file are serialized and no interleaving can push a window past its limit.
- PostgreSQL: transactions run at READ COMMITTED and everything that changes one agent's money state
  (the check-and-reserve in :meth:`Ledger.begin`, commit, release, approve/deny/expire, card
  registration) first takes a **per-(scope, agent) advisory transaction lock**
  (``pg_advisory_xact_lock``). Within it every read sees all earlier commits and nobody else changes
  that agent's totals, requests or approvals, so the check and the reservation are atomic exactly as
  on SQLite, while different agents proceed in parallel. Chosen over ``SELECT ... FOR UPDATE`` on the
  spend_totals rows because the check must also hold for rows that do not exist yet (a new day's
  totals, a new request id, a card being issued), and over SERIALIZABLE-with-retry because a burst of
  calls for one agent then queues instead of aborting and retrying each other, and no call needs a
  retry loop. The expiry sweep, which touches other agents' approvals, takes their locks only with
  ``pg_try_advisory_xact_lock`` (a busy agent is swept next time), so lock waits never form a cycle.

Checking a limit costs O(1) whatever the history: per-window running totals (``spend_totals``, one
row per agent, currency, window and calendar key) are updated in the same transaction as each entry.

Amounts are integer minor units (cents) inside; ``Decimal`` at the edges.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from interlace_mcp.money import format_amount, from_minor, to_minor
from interlace_mcp.policy._db import Cursor, Database, Migration, Row
from interlace_mcp.policy._policy import AgentPolicy
from interlace_mcp.policy._windows import WINDOWS, epoch_to_iso, iso_utc, window_keys

__all__ = [
    "Approval",
    "BeginResult",
    "CardRecord",
    "Ledger",
    "Refused",
    "RequestConflict",
    "RequestKey",
    "RequestRecord",
    "Violation",
    "WindowStatus",
    "refusal_text",
]

#: How long request records are kept (Interlace keeps idempotency keys 90 days).
REQUEST_RETENTION_SECONDS = 90 * 24 * 3600
_WINDOW_CODES = {"day": "daily_limit", "week": "weekly_limit", "month": "monthly_limit", "lifetime": "lifetime_limit"}
_WINDOW_WORDS = {"day": "daily", "week": "weekly", "month": "monthly", "lifetime": "lifetime"}
#: The order in which a refusal lists the rules it breaks (DESIGN section 7, "Order of checks").
RULE_ORDER = (
    "tool_not_allowed",
    "agent_frozen",
    "per_transaction_limit",
    "daily_limit",
    "weekly_limit",
    "monthly_limit",
    "lifetime_limit",
    "max_active_cards",
    "payee_not_allowed",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    agent TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    state TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released')),
    tool TEXT NOT NULL,
    request_id TEXT NOT NULL,
    day_key TEXT NOT NULL,
    week_key TEXT NOT NULL,
    month_key TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_entries_open ON spend_entries (scope, agent, state);
CREATE TABLE IF NOT EXISTS spend_totals (
    scope TEXT NOT NULL,
    agent TEXT NOT NULL,
    currency TEXT NOT NULL,
    "window" TEXT NOT NULL,
    window_key TEXT NOT NULL,
    reserved_minor INTEGER NOT NULL DEFAULT 0 CHECK (reserved_minor >= 0),
    committed_minor INTEGER NOT NULL DEFAULT 0 CHECK (committed_minor >= 0),
    PRIMARY KEY (scope, agent, currency, "window", window_key)
);
CREATE TABLE IF NOT EXISTS requests (
    scope TEXT NOT NULL,
    agent TEXT NOT NULL,
    tool TEXT NOT NULL,
    request_id TEXT NOT NULL,
    args_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    entry_id INTEGER,
    approval_id TEXT,
    keys_json TEXT NOT NULL,
    progress_json TEXT NOT NULL DEFAULT '{}',
    result_json TEXT,
    card_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, agent, tool, request_id)
);
CREATE INDEX IF NOT EXISTS requests_by_status ON requests (scope, agent, tool, status);
CREATE INDEX IF NOT EXISTS requests_by_id ON requests (scope, agent, request_id);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    agent TEXT NOT NULL,
    tool TEXT NOT NULL,
    request_id TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    summary TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'used')),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    decided_at REAL,
    decided_by TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS approvals_open ON approvals (status, expires_at);
CREATE TABLE IF NOT EXISTS cards (
    scope TEXT NOT NULL,
    card_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    label TEXT,
    request_id TEXT,
    frozen_by TEXT,
    created_at REAL NOT NULL,
    deleted_at REAL,
    PRIMARY KEY (scope, card_id)
);
CREATE INDEX IF NOT EXISTS cards_by_agent ON cards (scope, agent, deleted_at);
CREATE TABLE IF NOT EXISTS webhook_events (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS card_activity (
    scope TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    card_id TEXT NOT NULL,
    type INTEGER NOT NULL,
    status TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    merchant TEXT,
    remark TEXT,
    event_time REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, transaction_id)
);
CREATE INDEX IF NOT EXISTS card_activity_by_card ON card_activity (scope, card_id, event_time);
CREATE TABLE IF NOT EXISTS agent_tokens (
    sha256 TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS agent_tokens_by_agent ON agent_tokens (agent);
CREATE TABLE IF NOT EXISTS agent_flags (
    agent TEXT PRIMARY KEY,
    frozen INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    updated_by TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS operator_tokens (
    sha256 TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS operator_tokens_by_operator ON operator_tokens (operator);
"""

#: Numbered schema changes, applied once each at startup (:meth:`Database.migrate`). Migration 1 is the
#: base schema above. To change the schema, APPEND a migration (never edit one that has shipped): a
#: database already at version 1 will not run an edited migration 1 again.
_MIGRATIONS: list[Migration] = [
    [statement for statement in _SCHEMA.split(";") if statement.strip()],
]


# ---- value types -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One rule a call breaks: a stable code and a sentence naming limit, use and what remains."""

    code: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return f"[{self.code}] {self.message}"


def refusal_text(violations: Sequence[Violation]) -> str:
    """All violations in rule order, each starting with its code in brackets."""
    order = {code: i for i, code in enumerate(RULE_ORDER)}
    ordered = sorted(violations, key=lambda v: order.get(v.code, len(order)))
    return "; ".join(v.text for v in ordered)


class RequestConflict(Exception):
    """The same request_id was used before with different arguments."""

    def __init__(self, tool: str, request_id: str) -> None:
        super().__init__(
            f"request_id {request_id!r} was already used for a different {tool} call; "
            "use a new request_id for a new request"
        )


@dataclass(frozen=True)
class RequestKey:
    scope: str
    agent: str
    tool: str
    request_id: str


@dataclass(frozen=True)
class Approval:
    id: str
    agent: str
    tool: str
    request_id: str
    amount: Decimal
    currency: str
    summary: str
    status: str
    created_at: float
    expires_at: float
    decided_at: float | None
    decided_by: str | None
    reason: str | None
    scope: str

    @property
    def expires_at_iso(self) -> str:
        return epoch_to_iso(self.expires_at) or ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "approval_id": self.id,
            "agent": self.agent,
            "tool": self.tool,
            "request_id": self.request_id,
            "amount": format_amount(self.amount),
            "currency": self.currency,
            "summary": self.summary,
            "status": self.status,
            "created_at": epoch_to_iso(self.created_at),
            "expires_at": epoch_to_iso(self.expires_at),
            "decided_at": epoch_to_iso(self.decided_at),
            "decided_by": self.decided_by,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RequestRecord:
    key: RequestKey
    args_hash: str
    status: str  # pending_approval | executing | completed | refused
    amount: Decimal
    currency: str
    entry_id: int | None
    approval_id: str | None
    keys: dict[str, str]
    progress: dict[str, Any]
    result: dict[str, Any] | None
    card_id: str | None
    created_at: float
    updated_at: float
    approval: Approval | None = None


@dataclass(frozen=True)
class BeginResult:
    record: RequestRecord
    is_new: bool


@dataclass(frozen=True)
class CardRecord:
    scope: str
    card_id: str
    agent: str
    label: str | None
    request_id: str | None
    frozen_by: str | None
    created_at: float
    deleted_at: float | None


@dataclass(frozen=True)
class WindowStatus:
    window: str
    limit: Decimal | None
    spent: Decimal
    reserved: Decimal
    remaining: Decimal | None
    resets_at: str | None

    def as_dict(self) -> dict[str, Any]:
        def fmt(value: Decimal | None) -> str | None:
            return None if value is None else format_amount(value)

        return {
            "window": self.window,
            "limit": fmt(self.limit),
            "spent": fmt(self.spent),
            "reserved": fmt(self.reserved),
            "remaining": fmt(self.remaining),
            "resets_at": self.resets_at,
        }


# ---- the ledger ------------------------------------------------------------------------------


class Ledger:
    """The ledger on SQLite or PostgreSQL. Thread-safe; every public method is one transaction."""

    def __init__(self, path: str | Path | Database, *, clock: Callable[[], float] = time.time) -> None:
        """``path``: a SQLite file (``:memory:`` allowed), or an open :class:`Database` (see :meth:`from_url`)."""
        self._conn = path if isinstance(path, Database) else Database.sqlite(path)
        #: The SQLite file, or the PostgreSQL URL with its password masked.
        self.path = self._conn.description
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self._conn.migrate("ledger", _MIGRATIONS)
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> Ledger:
        """``sqlite:///absolute/path``, ``sqlite:///:memory:`` or ``postgresql://user@host:port/db?options=...``."""
        return cls(Database.from_url(url), clock=clock)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def now(self) -> float:
        return self._clock()

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        with self._lock, self._conn.transaction() as cur:
            yield cur

    def _lock_agent(self, cur: Cursor, scope: str, agent: str) -> None:
        """Serialize with every other transaction changing this agent's money state (module docstring)."""
        self._conn.lock(cur, "ledger-agent", scope, agent)

    # ---- requests: begin / resume / finish -------------------------------------------------

    def begin(
        self,
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
    ) -> BeginResult:
        """New request, replay, or conflict -- and for a new one: check every rule and reserve, atomically.

        Raises :class:`RequestConflict` for a known request_id with other arguments, and
        :class:`Refused` (nothing stored) when any rule is broken.
        """
        now = self._clock()
        with self._tx() as cur:
            self._lock_agent(cur, key.scope, key.agent)
            self._expire(cur, now)
            existing = self._get_request(cur, key)
            if existing is not None:
                if existing.args_hash != args_hash:
                    raise RequestConflict(key.tool, key.request_id)
                return BeginResult(existing, is_new=False)
            violations = list(stateless_violations)
            violations += self._window_violations(cur, key, policy, spend, currency, now)
            if issues_card:
                violations += self._card_violations(cur, key, policy)
            if violations:
                raise Refused(violations)
            entry_id = self._reserve(cur, key, spend, currency, policy, now) if spend > 0 else None
            approval_id = None
            status = "executing"
            if needs_approval:
                approval_id = "apr_" + secrets.token_hex(10)
                cur.execute(
                    "INSERT INTO approvals (id, scope, agent, tool, request_id, amount_minor, currency, summary,"
                    " status, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (
                        approval_id,
                        key.scope,
                        key.agent,
                        key.tool,
                        key.request_id,
                        to_minor(spend),
                        currency,
                        approval_summary,
                        now,
                        now + approval_ttl,
                    ),
                )
                status = "pending_approval"
            keys = {step: str(uuid.uuid4()) for step in steps}
            cur.execute(
                "INSERT INTO requests (scope, agent, tool, request_id, args_hash, status, amount_minor, currency,"
                " entry_id, approval_id, keys_json, progress_json, card_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.scope,
                    key.agent,
                    key.tool,
                    key.request_id,
                    args_hash,
                    status,
                    to_minor(spend),
                    currency,
                    entry_id,
                    approval_id,
                    json.dumps(keys),
                    json.dumps(progress or {}),
                    card_id,
                    now,
                    now,
                ),
            )
            record = self._get_request(cur, key)
            assert record is not None
            return BeginResult(record, is_new=True)

    def evaluate(
        self,
        key: RequestKey,
        *,
        policy: AgentPolicy,
        spend: Decimal,
        currency: str,
        issues_card: bool = False,
        stateless_violations: Sequence[Violation] = (),
    ) -> list[Violation]:
        """What :meth:`begin` would refuse for, without writing anything (dry runs)."""
        now = self._clock()
        with self._lock:
            cur = self._conn.cursor()
            try:
                violations = list(stateless_violations)
                violations += self._window_violations(cur, key, policy, spend, currency, now)
                if issues_card:
                    violations += self._card_violations(cur, key, policy)
                return violations
            finally:
                cur.close()

    def get_request(self, key: RequestKey) -> RequestRecord | None:
        now = self._clock()
        with self._tx() as cur:
            self._lock_agent(cur, key.scope, key.agent)
            self._expire(cur, now)
            return self._get_request(cur, key)

    def peek_request(self, key: RequestKey) -> RequestRecord | None:
        """Read a request record without expiring anything (safe for side-effect-free callers)."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                return self._get_request(cur, key)
            finally:
                cur.close()

    def find_requests(self, scope: str, agent: str, request_id: str) -> list[RequestRecord]:
        """Every tool's record for one of this agent's request ids, newest first."""
        now = self._clock()
        with self._tx() as cur:
            self._lock_agent(cur, scope, agent)
            self._expire(cur, now)
            rows = cur.execute(
                "SELECT tool FROM requests WHERE scope = ? AND agent = ? AND request_id = ? ORDER BY updated_at DESC",
                (scope, agent, request_id),
            ).fetchall()
            found = [self._get_request(cur, RequestKey(scope, agent, row["tool"], request_id)) for row in rows]
            return [r for r in found if r is not None]

    def start_approved(self, key: RequestKey) -> RequestRecord:
        """If the request's approval was granted, mark it used and the request executing."""
        now = self._clock()
        with self._tx() as cur:
            self._lock_agent(cur, key.scope, key.agent)
            self._expire(cur, now)
            record = self._get_request(cur, key)
            if record is None:
                raise KeyError(key)
            if record.status == "pending_approval" and record.approval and record.approval.status == "approved":
                cur.execute(
                    "UPDATE approvals SET status = 'used' WHERE id = ? AND status = 'approved'", (record.approval_id,)
                )
                cur.execute(
                    "UPDATE requests SET status = 'executing', updated_at = ? WHERE scope = ? AND agent = ?"
                    " AND tool = ? AND request_id = ? AND status = 'pending_approval'",
                    (now, key.scope, key.agent, key.tool, key.request_id),
                )
                record = self._get_request(cur, key)
                assert record is not None
            return record

    def save_progress(self, key: RequestKey, progress: dict[str, Any], *, card_id: str | None = None) -> None:
        """Durably note how far a multi-step request got (before and after each upstream step)."""
        now = self._clock()
        with self._tx() as cur:
            cur.execute(
                "UPDATE requests SET progress_json = ?, card_id = COALESCE(?, card_id), updated_at = ?"
                " WHERE scope = ? AND agent = ? AND tool = ? AND request_id = ?",
                (json.dumps(progress), card_id, now, key.scope, key.agent, key.tool, key.request_id),
            )

    def complete(self, key: RequestKey, result: dict[str, Any]) -> RequestRecord:
        """Success: commit the reservation and store the result for replays."""
        now = self._clock()
        with self._tx() as cur:
            self._lock_agent(cur, key.scope, key.agent)
            record = self._get_request(cur, key)
            if record is None:
                raise KeyError(key)
            if record.status == "completed":
                return record
            if record.entry_id is not None:
                self._settle_entry(cur, record.entry_id, "committed", now)
            cur.execute(
                "UPDATE requests SET status = 'completed', result_json = ?, updated_at = ?"
                " WHERE scope = ? AND agent = ? AND tool = ? AND request_id = ?",
                (json.dumps(result), now, key.scope, key.agent, key.tool, key.request_id),
            )
            done = self._get_request(cur, key)
            assert done is not None
            return done

    def abandon(self, key: RequestKey) -> None:
        """Definite failure upstream: release the reservation and forget the request.

        Like a policy refusal, a definite failure is not stored: the agent may fix the cause and
        retry with the same request_id (new upstream keys are generated; nothing moved before).
        """
        now = self._clock()
        with self._tx() as cur:
            self._lock_agent(cur, key.scope, key.agent)
            record = self._get_request(cur, key)
            if record is None or record.status == "completed":
                return
            if record.entry_id is not None:
                self._settle_entry(cur, record.entry_id, "released", now)
            cur.execute(
                "DELETE FROM requests WHERE scope = ? AND agent = ? AND tool = ? AND request_id = ?",
                (key.scope, key.agent, key.tool, key.request_id),
            )

    def open_requests(self, scope: str | None = None) -> list[RequestRecord]:
        """Requests whose upstream outcome is not settled yet (for recovery)."""
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT scope, agent, tool, request_id FROM requests WHERE status = 'executing'"
                + (" AND scope = ?" if scope else ""),
                (scope,) if scope else (),
            ).fetchall()
            found = [
                self._get_request(cur, RequestKey(r["scope"], r["agent"], r["tool"], r["request_id"])) for r in rows
            ]
            return [r for r in found if r is not None]

    def completed_requests(self, scope: str, since: float | None = None) -> list[RequestRecord]:
        """Completed requests of one upstream (optionally updated since an epoch time), oldest first."""
        with self._tx() as cur:
            sql = "SELECT agent, tool, request_id FROM requests WHERE scope = ? AND status = 'completed'"
            params: list[Any] = [scope]
            if since is not None:
                sql += " AND updated_at >= ?"
                params.append(since)
            rows = cur.execute(sql + " ORDER BY updated_at", params).fetchall()
            found = [self._get_request(cur, RequestKey(scope, r["agent"], r["tool"], r["request_id"])) for r in rows]
            return [r for r in found if r is not None]

    def purge_old_requests(self) -> int:
        """Drop settled request records older than the retention period; returns how many."""
        cutoff = self._clock() - REQUEST_RETENTION_SECONDS
        with self._tx() as cur:
            cur.execute("DELETE FROM requests WHERE status IN ('completed', 'refused') AND updated_at < ?", (cutoff,))
            return cur.rowcount

    # ---- approvals ---------------------------------------------------------------------------

    def list_approvals(self, *, status: str | None = "pending", agent: str | None = None) -> list[Approval]:
        now = self._clock()
        with self._tx() as cur:
            self._expire(cur, now)
            sql = "SELECT * FROM approvals WHERE 1 = 1"
            params: list[Any] = []
            if status is not None:
                sql += " AND status = ?"
                params.append(status)
            if agent is not None:
                sql += " AND agent = ?"
                params.append(agent)
            sql += " ORDER BY created_at"
            return [_approval(row) for row in cur.execute(sql, params).fetchall()]

    def get_approval(self, approval_id: str) -> Approval | None:
        now = self._clock()
        with self._tx() as cur:
            self._expire(cur, now)
            row = cur.execute("SELECT * FROM approvals WHERE id = ?", (approval_id,)).fetchone()
            return _approval(row) if row else None

    def decide(
        self, approval_id: str, *, approve: bool, by: str, reason: str | None = None, ttl: float = 900.0
    ) -> Approval:
        """A human's decision. Deny releases the reservation at once; approve keeps it for ``ttl`` more seconds."""
        now = self._clock()
        with self._tx() as cur:
            owner = cur.execute("SELECT scope, agent FROM approvals WHERE id = ?", (approval_id,)).fetchone()
            if owner is not None:  # an approval never changes owner: lock first, then read it for real
                self._lock_agent(cur, owner["scope"], owner["agent"])
            self._expire(cur, now)
            row = cur.execute("SELECT * FROM approvals WHERE id = ?", (approval_id,)).fetchone()
            if row is None:
                raise KeyError(f"no approval {approval_id!r}")
            if row["status"] != "pending":
                raise ValueError(f"approval {approval_id} is already {row['status']}")
            if approve:
                cur.execute(
                    "UPDATE approvals SET status = 'approved', decided_at = ?, decided_by = ?, reason = ?,"
                    " expires_at = ? WHERE id = ?",
                    (now, by, reason, now + ttl, approval_id),
                )
            else:
                cur.execute(
                    "UPDATE approvals SET status = 'denied', decided_at = ?, decided_by = ?, reason = ? WHERE id = ?",
                    (now, by, reason, approval_id),
                )
                self._refuse_request_of(cur, row, "approval_denied", _denied_text(row, by, reason), now)
            updated = cur.execute("SELECT * FROM approvals WHERE id = ?", (approval_id,)).fetchone()
            return _approval(updated)

    def expire_now(self) -> int:
        """Expire overdue approvals (releasing their reservations); returns how many."""
        with self._tx() as cur:
            return self._expire(cur, self._clock())

    # ---- cards and agents --------------------------------------------------------------------

    def register_card(self, scope: str, agent: str, card_id: str, *, label: str | None, request_id: str | None) -> None:
        now = self._clock()
        with self._tx() as cur:
            self._lock_agent(cur, scope, agent)  # active cards count in begin's max_active_cards check
            cur.execute(
                "INSERT INTO cards (scope, card_id, agent, label, request_id, created_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (scope, card_id) DO NOTHING",
                (scope, card_id, agent, label, request_id, now),
            )

    def owned_card(self, scope: str, agent: str, card_id: str, *, include_deleted: bool = False) -> CardRecord | None:
        """The card if this agent owns it (and it is not deleted, unless asked) -- else None (same as unknown)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM cards WHERE scope = ? AND card_id = ? AND agent = ?"
                + ("" if include_deleted else " AND deleted_at IS NULL"),
                (scope, card_id, agent),
            ).fetchone()
        return _card(row) if row else None

    def agent_cards(self, scope: str, agent: str) -> list[CardRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM cards WHERE scope = ? AND agent = ? AND deleted_at IS NULL ORDER BY created_at",
                (scope, agent),
            ).fetchall()
        return [_card(row) for row in rows]

    def all_cards(self, scope: str) -> list[CardRecord]:
        """Every card any agent was issued on this upstream, closed ones included."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM cards WHERE scope = ? ORDER BY created_at", (scope,)).fetchall()
        return [_card(row) for row in rows]

    def set_card_frozen_by(self, scope: str, card_id: str, frozen_by: str | None) -> None:
        with self._tx() as cur:
            cur.execute("UPDATE cards SET frozen_by = ? WHERE scope = ? AND card_id = ?", (frozen_by, scope, card_id))

    def mark_card_deleted(self, scope: str, card_id: str) -> None:
        now = self._clock()
        with self._tx() as cur:
            cur.execute(
                "UPDATE cards SET deleted_at = COALESCE(deleted_at, ?) WHERE scope = ? AND card_id = ?",
                (now, scope, card_id),
            )

    def set_agent_frozen(self, agent: str, frozen: bool, *, by: str, reason: str | None = None) -> None:
        now = self._clock()
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO agent_flags (agent, frozen, reason, updated_by, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (agent) DO UPDATE SET frozen = excluded.frozen, reason = excluded.reason,"
                " updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                (agent, int(frozen), reason, by, now),
            )

    def agent_frozen(self, agent: str) -> tuple[str | None, str | None] | None:
        """(reason, who) when the agent's kill switch is on, else None."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM agent_flags WHERE agent = ? AND frozen = 1", (agent,)).fetchone()
        return (row["reason"], row["updated_by"]) if row else None

    # ---- webhooks: what cards actually did at merchants --------------------------------------

    def record_card_event(
        self,
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
        now = self._clock()
        rank = {"PENDING": 0, "CLOSED": 1, "FAIL": 1}
        with self._tx() as cur:
            self._conn.lock(cur, "card-activity", scope, transaction_id)  # one writer per upstream transaction
            cur.execute(
                "INSERT INTO webhook_events (id, event_type, received_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (event_id, event_type, now),
            )
            if cur.rowcount == 0:
                return False  # a duplicate (possibly delivered to another instance at the same moment)
            row = cur.execute(
                "SELECT status, event_time FROM card_activity WHERE scope = ? AND transaction_id = ?",
                (scope, transaction_id),
            ).fetchone()
            if row is not None:
                newer = (rank.get(status, 0), event_time) >= (rank.get(row["status"], 0), row["event_time"])
                if not newer:
                    return True
            cur.execute(
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

    def card_activity(self, scope: str, card_ids: Sequence[str], since: float) -> dict[str, Any]:
        """Merchant authorizations on these cards since ``since`` (from webhooks): approved sum, declines."""
        if not card_ids:
            return {"authorized": Decimal("0.00"), "approved": 0, "declined": 0}
        marks = ",".join("?" for _ in card_ids)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT status, amount_minor FROM card_activity WHERE scope = ? AND type = 1 AND event_time >= ?"
                f" AND card_id IN ({marks})",
                (scope, since, *card_ids),
            ).fetchall()
        approved = [r for r in rows if r["status"] != "FAIL"]
        return {
            "authorized": from_minor(sum(int(r["amount_minor"]) for r in approved)),
            "approved": len(approved),
            "declined": len(rows) - len(approved),
        }

    # ---- bearer tokens (only their sha256 is stored) ----------------------------------------

    def add_token(self, agent: str, digest: str) -> None:
        now = self._clock()
        with self._tx() as cur:
            cur.execute("INSERT INTO agent_tokens (sha256, agent, created_at) VALUES (?, ?, ?)", (digest, agent, now))

    def revoke_tokens(self, agent: str) -> int:
        """Revoke every live token of ``agent``; returns how many. Takes effect on the next request."""
        now = self._clock()
        with self._tx() as cur:
            cur.execute("UPDATE agent_tokens SET revoked_at = ? WHERE agent = ? AND revoked_at IS NULL", (now, agent))
            return cur.rowcount

    def agent_for_token(self, digest: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT agent FROM agent_tokens WHERE sha256 = ? AND revoked_at IS NULL", (digest,)
            ).fetchone()
        return str(row[0]) if row else None

    def token_agents(self) -> dict[str, int]:
        """Agents with live database tokens, and how many each has."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT agent, COUNT(*) FROM agent_tokens WHERE revoked_at IS NULL GROUP BY agent ORDER BY agent"
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    # ---- visibility ------------------------------------------------------------------------

    def window_status(self, scope: str, agent: str, policy: AgentPolicy) -> list[WindowStatus]:
        """Limit, spent, reserved, remaining and reset time per window (``transaction`` first)."""
        now = self._clock()
        keys = window_keys(now, policy.zone)
        out = [
            WindowStatus(
                window="transaction",
                limit=policy.per_transaction,
                spent=Decimal("0.00"),
                reserved=Decimal("0.00"),
                remaining=policy.per_transaction,
                resets_at=None,
            )
        ]
        with self._tx() as cur:
            self._lock_agent(cur, scope, agent)
            self._expire(cur, now)
            for window in WINDOWS:
                reserved, committed = self._totals(cur, scope, agent, policy.currency, window, keys.key(window))
                limit = policy.window_limits()[window]
                remaining = None if limit is None else max(limit - from_minor(reserved + committed), Decimal("0.00"))
                out.append(
                    WindowStatus(
                        window=window,
                        limit=limit,
                        spent=from_minor(committed),
                        reserved=from_minor(reserved),
                        remaining=remaining,
                        resets_at=iso_utc(keys.resets[window]),
                    )
                )
        return out

    def committed_total(self, scope: str, agent: str | None = None) -> Decimal:
        """Sum of committed spend (all windows' ground truth: the entries themselves)."""
        with self._lock:
            sql = "SELECT COALESCE(SUM(amount_minor), 0) FROM spend_entries WHERE scope = ? AND state = 'committed'"
            params: list[Any] = [scope]
            if agent is not None:
                sql += " AND agent = ?"
                params.append(agent)
            total = self._conn.execute(sql, params).fetchone()[0]
        return from_minor(int(total))

    def reserved_total(self, scope: str, agent: str | None = None) -> Decimal:
        with self._lock:
            sql = "SELECT COALESCE(SUM(amount_minor), 0) FROM spend_entries WHERE scope = ? AND state = 'reserved'"
            params: list[Any] = [scope]
            if agent is not None:
                sql += " AND agent = ?"
                params.append(agent)
            total = self._conn.execute(sql, params).fetchone()[0]
        return from_minor(int(total))

    def known_agents(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT agent FROM spend_entries UNION SELECT agent FROM cards UNION SELECT agent FROM agent_flags"
                " UNION SELECT agent FROM requests ORDER BY 1"
            ).fetchall()
        return [row[0] for row in rows]

    # ---- internals -------------------------------------------------------------------------

    def _totals(self, cur: Cursor, scope: str, agent: str, currency: str, window: str, wkey: str) -> tuple[int, int]:
        row = cur.execute(
            "SELECT reserved_minor, committed_minor FROM spend_totals"
            ' WHERE scope = ? AND agent = ? AND currency = ? AND "window" = ? AND window_key = ?',
            (scope, agent, currency, window, wkey),
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _window_violations(
        self, cur: Cursor, key: RequestKey, policy: AgentPolicy, spend: Decimal, currency: str, now: float
    ) -> list[Violation]:
        if spend <= 0:
            return []
        keys = window_keys(now, policy.zone)
        requested = to_minor(spend)
        out: list[Violation] = []
        for window, limit in policy.window_limits().items():
            if limit is None:
                continue
            reserved, committed = self._totals(cur, key.scope, key.agent, currency, window, keys.key(window))
            if committed + reserved + requested <= to_minor(limit):
                continue
            remaining = max(to_minor(limit) - committed - reserved, 0)
            resets = iso_utc(keys.resets[window])
            used = [
                f"{format_amount(from_minor(committed))} spent",
                f"{format_amount(from_minor(reserved))} reserved",
                f"{format_amount(spend)} requested",
                f"{format_amount(from_minor(remaining))} remaining",
            ]
            reset = f"resets {resets}" if resets else "never resets"
            text = f"{_WINDOW_WORDS[window]} limit {format_amount(limit)} {currency}: {', '.join(used)}; {reset}"
            out.append(
                Violation(
                    _WINDOW_CODES[window],
                    text,
                    {
                        "window": window,
                        "limit": format_amount(limit),
                        "spent": format_amount(from_minor(committed)),
                        "reserved": format_amount(from_minor(reserved)),
                        "requested": format_amount(spend),
                        "remaining": format_amount(from_minor(remaining)),
                        "resets_at": resets,
                    },
                )
            )
        return out

    def _card_violations(self, cur: Cursor, key: RequestKey, policy: AgentPolicy) -> list[Violation]:
        if policy.max_active_cards is None:
            return []
        # Issues not finished yet (pending approval or in flight, card not registered) hold a slot too.
        # One statement, so both counts come from one snapshot (a card registered between two reads of
        # READ COMMITTED must not drop out of both).
        active, pending = cur.execute(
            "SELECT (SELECT COUNT(*) FROM cards WHERE scope = ? AND agent = ? AND deleted_at IS NULL),"
            " (SELECT COUNT(*) FROM requests WHERE scope = ? AND agent = ? AND tool = ? AND card_id IS NULL"
            " AND status IN ('pending_approval', 'executing'))",
            (key.scope, key.agent, key.scope, key.agent, key.tool),
        ).fetchone()
        used = int(active) + int(pending)
        if used + 1 <= policy.max_active_cards:
            return []
        return [
            Violation(
                "max_active_cards",
                f"max active cards {policy.max_active_cards}: {active} active, {pending} being issued, 0 remaining;"
                " close a card (close_card) to issue another",
                {"limit": policy.max_active_cards, "active": int(active), "pending": int(pending)},
            )
        ]

    def _reserve(
        self, cur: Cursor, key: RequestKey, spend: Decimal, currency: str, policy: AgentPolicy, now: float
    ) -> int:
        keys = window_keys(now, policy.zone)
        amount = to_minor(spend)
        entry_id = self._conn.insert_id(
            cur,
            "INSERT INTO spend_entries (scope, agent, currency, amount_minor, state, tool, request_id, day_key,"
            " week_key, month_key, created_at, updated_at) VALUES (?, ?, ?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?)",
            (
                key.scope,
                key.agent,
                currency,
                amount,
                key.tool,
                key.request_id,
                keys.day,
                keys.week,
                keys.month,
                now,
                now,
            ),
        )
        for window in WINDOWS:
            cur.execute(
                'INSERT INTO spend_totals (scope, agent, currency, "window", window_key, reserved_minor,'
                ' committed_minor) VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (scope, agent, currency, "window",'
                " window_key) DO UPDATE SET reserved_minor = spend_totals.reserved_minor + excluded.reserved_minor",
                (key.scope, key.agent, currency, window, keys.key(window), amount),
            )
        return int(entry_id)

    def _settle_entry(self, cur: Cursor, entry_id: int, state: str, now: float) -> None:
        row = cur.execute("SELECT * FROM spend_entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None or row["state"] != "reserved":
            return  # already settled: settling is idempotent
        committed = row["amount_minor"] if state == "committed" else 0
        wkeys = {"day": row["day_key"], "week": row["week_key"], "month": row["month_key"], "lifetime": "all"}
        for window in WINDOWS:
            cur.execute(
                "UPDATE spend_totals SET reserved_minor = reserved_minor - ?, committed_minor = committed_minor + ?"
                ' WHERE scope = ? AND agent = ? AND currency = ? AND "window" = ? AND window_key = ?',
                (row["amount_minor"], committed, row["scope"], row["agent"], row["currency"], window, wkeys[window]),
            )
        cur.execute("UPDATE spend_entries SET state = ?, updated_at = ? WHERE id = ?", (state, now, entry_id))

    def _expire(self, cur: Cursor, now: float) -> int:
        overdue = "SELECT * FROM approvals WHERE status IN ('pending', 'approved') AND expires_at <= ?"
        expired = 0
        for candidate in cur.execute(overdue + " ORDER BY id", (now,)).fetchall():
            # Another agent's approval: only if its lock is free (or ours); a busy agent is swept next time.
            if not self._conn.try_lock(cur, "ledger-agent", candidate["scope"], candidate["agent"]):
                continue
            row = cur.execute(overdue + " AND id = ?", (now, candidate["id"])).fetchone()  # decided meanwhile?
            if row is None:
                continue
            expired += 1
            cur.execute("UPDATE approvals SET status = 'expired' WHERE id = ?", (row["id"],))
            text = (
                f"approval {row['id']} for {format_amount(from_minor(row['amount_minor']))} {row['currency']}"
                f" expired at {epoch_to_iso(row['expires_at'])} without being "
                + ("used" if row["status"] == "approved" else "decided")
                + "; the reservation was released. Send a new request (new request_id) to ask again"
            )
            self._refuse_request_of(cur, row, "approval_expired", text, now)
        return expired

    def _refuse_request_of(self, cur: Cursor, approval: Row, code: str, text: str, now: float) -> None:
        req = cur.execute(
            "SELECT entry_id, status FROM requests WHERE scope = ? AND agent = ? AND tool = ? AND request_id = ?",
            (approval["scope"], approval["agent"], approval["tool"], approval["request_id"]),
        ).fetchone()
        if req is None or req["status"] != "pending_approval":
            return
        if req["entry_id"] is not None:
            self._settle_entry(cur, int(req["entry_id"]), "released", now)
        cur.execute(
            "UPDATE requests SET status = 'refused', result_json = ?, updated_at = ?"
            " WHERE scope = ? AND agent = ? AND tool = ? AND request_id = ?",
            (
                json.dumps({"code": code, "message": text}),
                now,
                approval["scope"],
                approval["agent"],
                approval["tool"],
                approval["request_id"],
            ),
        )

    def _get_request(self, cur: Cursor, key: RequestKey) -> RequestRecord | None:
        row = cur.execute(
            "SELECT * FROM requests WHERE scope = ? AND agent = ? AND tool = ? AND request_id = ?",
            (key.scope, key.agent, key.tool, key.request_id),
        ).fetchone()
        if row is None:
            return None
        approval = None
        if row["approval_id"]:
            arow = cur.execute("SELECT * FROM approvals WHERE id = ?", (row["approval_id"],)).fetchone()
            approval = _approval(arow) if arow else None
        return RequestRecord(
            key=key,
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
        )

    # ---- dashboard queries -------------------------------------------------------------------

    def add_operator_token(self, operator: str, digest: str) -> None:
        """Store the sha256 of a new dashboard operator token (operator tokens never open the MCP endpoint)."""
        now = self._clock()
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO operator_tokens (sha256, operator, created_at) VALUES (?, ?, ?)", (digest, operator, now)
            )

    def operator_for_token(self, digest: str) -> str | None:
        """The operator whose live token has this sha256, else None (agent tokens are never operator tokens)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT operator FROM operator_tokens WHERE sha256 = ? AND revoked_at IS NULL", (digest,)
            ).fetchone()
        return str(row[0]) if row else None

    def revoke_operator_tokens(self, operator: str) -> int:
        """Revoke every live token of ``operator``; returns how many. Open dashboard sessions end at once."""
        now = self._clock()
        with self._tx() as cur:
            cur.execute(
                "UPDATE operator_tokens SET revoked_at = ? WHERE operator = ? AND revoked_at IS NULL", (now, operator)
            )
            return cur.rowcount

    def operator_names(self) -> dict[str, int]:
        """Operators with live dashboard tokens, and how many each has."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT operator, COUNT(*) FROM operator_tokens WHERE revoked_at IS NULL"
                " GROUP BY operator ORDER BY operator"
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def daily_spend(self, scope: str, days: int, agent: str | None = None) -> list[tuple[str, Decimal]]:
        """Committed spend per calendar day (the entries' ``day_key``, in each agent's policy timezone) for the
        last ``days`` days up to today (UTC), oldest first; days without spend are 0.00."""
        if days <= 0:
            return []
        today = datetime.fromtimestamp(self._clock(), tz=UTC).date()
        first = today - timedelta(days=days - 1)
        sql = (
            "SELECT day_key, COALESCE(SUM(amount_minor), 0) FROM spend_entries"
            " WHERE scope = ? AND state = 'committed' AND day_key >= ?"
        )
        params: list[Any] = [scope, first.isoformat()]
        if agent is not None:
            sql += " AND agent = ?"
            params.append(agent)
        with self._lock:
            rows = self._conn.execute(sql + " GROUP BY day_key ORDER BY day_key", params).fetchall()
        totals = {str(r[0]): int(r[1]) for r in rows}
        # An agent east of UTC may already be on tomorrow's key: extend the range rather than drop it.
        last = max([today, *(date.fromisoformat(k) for k in totals)])
        span = (last - first).days + 1
        keys = [(first + timedelta(days=i)).isoformat() for i in range(span)]
        return [(k, from_minor(totals.get(k, 0))) for k in keys[-days:]]


class Refused(Exception):
    """A policy refusal: every broken rule, in order. Nothing was stored or reserved."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        super().__init__(refusal_text(self.violations))


def _denied_text(row: Row, by: str, reason: str | None) -> str:
    who = by or "an operator"
    return (
        f"approval {row['id']} for {format_amount(from_minor(row['amount_minor']))} {row['currency']} was denied"
        f" by {who}" + (f": {reason}" if reason else "") + "; the reservation was released"
    )


def _approval(row: Row) -> Approval:
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


def _card(row: Row) -> CardRecord:
    return CardRecord(
        scope=row["scope"],
        card_id=row["card_id"],
        agent=row["agent"],
        label=row["label"],
        request_id=row["request_id"],
        frozen_by=row["frozen_by"],
        created_at=row["created_at"],
        deleted_at=row["deleted_at"],
    )
