"""The spend ledger, for synchronous callers (the CLI, operator tools, tests): reservations, request
records, approvals, card ownership, the kill switch, tokens, webhook activity and reports.

Storage is SQLite (one host; WAL, ``synchronous=FULL``) or PostgreSQL (several instances), chosen by the
database URL; the dialects' differences live in :mod:`._db`. Each method is one job of the
:class:`~interlace_mcp.policy.Store` this ledger owns: writes run in the store's writer thread (one
transaction, possibly shared with concurrent jobs: group commit), reads on reader connections. The
server's async code uses the same store (``ledger.store``) and the same job functions directly.

Why it is safe, in one process or several: every write transaction is serialized with every other one
on the database -- on SQLite by ``BEGIN IMMEDIATE`` (the file's write lock), on PostgreSQL by one
advisory transaction lock taken first (``pg_advisory_xact_lock``, :data:`~._store.WRITE_LOCK`). Within
it every read sees all earlier commits and nobody else changes any total, request or approval, so the
check and the reservation are one atomic step. (One database-wide lock rather than one per agent: the
audit log's hash chain, written in the same transactions, is one chain anyway, and group commit makes
the single writer cheap. Chosen over ``SELECT ... FOR UPDATE`` because the check must also hold for
rows that do not exist yet -- a new day's totals, a new request id, a card being issued -- and over
SERIALIZABLE-with-retry because a burst of calls then queues instead of aborting each other.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from interlace_mcp.policy import _activity as activity
from interlace_mcp.policy import _approvals as approvals
from interlace_mcp.policy import _cards as cards
from interlace_mcp.policy import _funding as funding
from interlace_mcp.policy import _reports as reports
from interlace_mcp.policy import _requests as requests
from interlace_mcp.policy import _tokens as tokens
from interlace_mcp.policy._db import Database
from interlace_mcp.policy._policy import AgentPolicy
from interlace_mcp.policy._schema import MIGRATIONS
from interlace_mcp.policy._store import Store
from interlace_mcp.policy._values import (
    Approval,
    BeginResult,
    CardRecord,
    RequestKey,
    RequestRecord,
    Violation,
    WindowStatus,
)

__all__ = ["Ledger"]


class Ledger:
    """The ledger on SQLite or PostgreSQL. Thread-safe; each method is one transaction (or one read)."""

    def __init__(self, path: str | Path | Database, *, clock: Callable[[], float] = time.time) -> None:
        """``path``: a SQLite file (``:memory:`` allowed), or an open :class:`Database` (see :meth:`from_url`)."""
        db = path if isinstance(path, Database) else Database.sqlite(path)
        #: The SQLite file, or the PostgreSQL URL with its password masked.
        self.path = db.description
        self._clock = clock
        try:
            db.migrate("ledger", MIGRATIONS)
        except BaseException:
            db.close()
            raise
        #: The async facade over the same database (the server's code uses it; nothing on the event loop).
        self.store = Store(db, clock=clock)

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> Ledger:
        """``sqlite:///absolute/path``, ``sqlite:///:memory:`` or ``postgresql://user@host:port/db?options=...``."""
        return cls(Database.from_url(url), clock=clock)

    def close(self) -> None:
        self.store.close()

    def now(self) -> float:
        return self._clock()

    @property
    def _conn(self) -> Database:
        """A connection of its own, for ad-hoc statements (tests, maintenance)."""
        return self.store.direct()

    def _expire_if_due(self) -> None:
        if self.store.read_sync(approvals.any_due):
            self.store.write_sync(approvals.expire_due)

    # ---- requests ------------------------------------------------------------------------------

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
        fund: Decimal = Decimal(0),
    ) -> BeginResult:
        """New request, replay, or conflict -- and for a new one: check every rule and reserve, atomically.

        Raises :class:`RequestConflict` for a known request_id with other arguments, and
        :class:`Refusal` (nothing stored) when any rule is broken. ``fund``: an amount funded into the
        Infinity account (its own daily window, ``fund_daily``; not spend).
        """
        return self.store.write_sync(
            requests.begin,
            key,
            args_hash=args_hash,
            policy=policy,
            spend=spend,
            currency=currency,
            issues_card=issues_card,
            stateless_violations=stateless_violations,
            needs_approval=needs_approval,
            approval_summary=approval_summary,
            approval_ttl=approval_ttl,
            steps=steps,
            progress=progress,
            card_id=card_id,
            fund=fund,
        )

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
        return self.store.read_sync(
            requests.evaluate,
            key,
            policy=policy,
            spend=spend,
            currency=currency,
            issues_card=issues_card,
            stateless_violations=stateless_violations,
        )

    def get_request(self, key: RequestKey) -> RequestRecord | None:
        self._expire_if_due()
        return self.store.read_sync(requests.get_request, key)

    def peek_request(self, key: RequestKey) -> RequestRecord | None:
        """Read a request record without expiring anything (safe for side-effect-free callers)."""
        return self.store.read_sync(requests.get_request, key)

    def find_requests(self, scope: str, agent: str, request_id: str) -> list[RequestRecord]:
        """Every tool's record for one of this agent's request ids, newest first."""
        self._expire_if_due()
        return self.store.read_sync(requests.find_requests, scope, agent, request_id)

    def start_approved(self, key: RequestKey) -> RequestRecord:
        """If the request's approval was granted, mark it used and the request executing."""
        return self.store.write_sync(requests.start_approved, key)

    def save_progress(self, key: RequestKey, progress: dict[str, Any], *, card_id: str | None = None) -> None:
        self.store.write_sync(requests.save_progress, key, progress, card_id=card_id)

    def complete(self, key: RequestKey, result: dict[str, Any]) -> RequestRecord:
        """Success: commit the reservation and store the result for replays."""
        return self.store.write_sync(requests.complete, key, result)

    def abandon(self, key: RequestKey) -> None:
        """Definite failure upstream: release the reservation and forget the request."""
        self.store.write_sync(requests.abandon, key)

    def open_requests(self, scope: str | None = None) -> list[RequestRecord]:
        """Requests whose upstream outcome is not settled yet (for recovery)."""
        return self.store.read_sync(requests.open_requests, scope)

    def completed_requests(self, scope: str, since: float | None = None) -> list[RequestRecord]:
        return self.store.read_sync(requests.completed_requests, scope, since)

    def purge_old_requests(self) -> int:
        """Drop settled request records older than the retention period (90 days); returns how many."""
        return self.store.write_sync(requests.purge_old_requests)

    # ---- approvals -----------------------------------------------------------------------------

    def list_approvals(self, *, status: str | None = "pending", agent: str | None = None) -> list[Approval]:
        self._expire_if_due()
        return self.store.read_sync(approvals.listing, status=status, agent=agent)

    def get_approval(self, approval_id: str) -> Approval | None:
        self._expire_if_due()
        return self.store.read_sync(approvals.get, approval_id)

    def decide(
        self, approval_id: str, *, approve: bool, by: str, reason: str | None = None, ttl: float = 900.0
    ) -> Approval:
        """A human's decision. Deny releases the reservation at once; approve keeps it for ``ttl`` more seconds."""
        return self.store.write_sync(approvals.decide, approval_id, approve=approve, by=by, reason=reason, ttl=ttl)

    def expire_now(self) -> int:
        """Expire overdue approvals (releasing their reservations); returns how many."""
        return self.store.write_sync(approvals.expire_due)

    # ---- cards and agents ----------------------------------------------------------------------

    def register_card(self, scope: str, agent: str, card_id: str, *, label: str | None, request_id: str | None) -> None:
        self.store.write_sync(cards.register_card, scope, agent, card_id, label=label, request_id=request_id)

    def owned_card(self, scope: str, agent: str, card_id: str, *, include_deleted: bool = False) -> CardRecord | None:
        return self.store.read_sync(cards.owned_card, scope, agent, card_id, include_deleted=include_deleted)

    def agent_cards(self, scope: str, agent: str) -> list[CardRecord]:
        return self.store.read_sync(cards.agent_cards, scope, agent)

    def all_cards(self, scope: str) -> list[CardRecord]:
        return self.store.read_sync(cards.all_cards, scope)

    def set_card_frozen_by(self, scope: str, card_id: str, frozen_by: str | None) -> None:
        self.store.write_sync(cards.set_card_frozen_by, scope, card_id, frozen_by)

    def mark_card_deleted(self, scope: str, card_id: str) -> None:
        self.store.write_sync(cards.mark_card_deleted, scope, card_id)

    def set_agent_frozen(self, agent: str, frozen: bool, *, by: str, reason: str | None = None) -> None:
        self.store.write_sync(cards.set_agent_frozen, agent, frozen, by=by, reason=reason)

    def agent_frozen(self, agent: str) -> tuple[str | None, str | None] | None:
        """(reason, who) when the agent's kill switch is on, else None."""
        return self.store.read_sync(cards.frozen, agent)

    # ---- webhooks ------------------------------------------------------------------------------

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
        """Record one notification once (de-duplicated by its id); returns False for a duplicate."""
        return self.store.write_sync(
            activity.record_card_event,
            event_id,
            event_type,
            scope=scope,
            transaction_id=transaction_id,
            card_id=card_id,
            type_code=type_code,
            status=status,
            amount=amount,
            currency=currency,
            merchant=merchant,
            remark=remark,
            event_time=event_time,
        )

    def card_activity(self, scope: str, card_ids: Sequence[str], since: float) -> dict[str, Any]:
        return self.store.read_sync(activity.card_activity, scope, card_ids, since)

    # ---- bearer tokens (only their sha256 is stored) -------------------------------------------

    def add_token(self, agent: str, digest: str) -> None:
        self.store.write_sync(tokens.add_token, "agent", agent, digest)

    def revoke_tokens(self, agent: str) -> int:
        """Revoke every live token of ``agent``; returns how many. Takes effect on the next request."""
        return self.store.write_sync(tokens.revoke_tokens, "agent", agent)

    def agent_for_token(self, digest: str) -> str | None:
        return self.store.read_sync(tokens.owner_of_token, "agent", digest)

    def token_agents(self) -> dict[str, int]:
        """Agents with live database tokens, and how many each has."""
        return self.store.read_sync(tokens.token_owners, "agent")

    def add_operator_token(self, operator: str, digest: str) -> None:
        """Store the sha256 of a new dashboard operator token (operator tokens never open the MCP endpoint)."""
        self.store.write_sync(tokens.add_token, "operator", operator, digest)

    def operator_for_token(self, digest: str) -> str | None:
        """The operator whose live token has this sha256, else None (agent tokens are never operator tokens)."""
        return self.store.read_sync(tokens.owner_of_token, "operator", digest)

    def revoke_operator_tokens(self, operator: str) -> int:
        """Revoke every live token of ``operator``; returns how many. Open dashboard sessions end at once."""
        return self.store.write_sync(tokens.revoke_tokens, "operator", operator)

    def operator_names(self) -> dict[str, int]:
        """Operators with live dashboard tokens, and how many each has."""
        return self.store.read_sync(tokens.token_owners, "operator")

    # ---- visibility ----------------------------------------------------------------------------

    def window_status(self, scope: str, agent: str, policy: AgentPolicy) -> list[WindowStatus]:
        """Limit, spent, reserved, remaining and reset time per window (``transaction`` first)."""
        self._expire_if_due()
        return self.store.read_sync(reports.window_status, scope, agent, policy)

    def committed_total(self, scope: str, agent: str | None = None) -> Decimal:
        """Sum of committed spend (all windows' ground truth: the entries themselves)."""
        return self.store.read_sync(reports.committed_total, scope, agent)

    def reserved_total(self, scope: str, agent: str | None = None) -> Decimal:
        return self.store.read_sync(reports.reserved_total, scope, agent)

    def fund_status(self, scope: str, agent: str, policy: AgentPolicy) -> funding.FundStatus:
        """Today's funding window of ``agent``: fund_daily, funded, reserved, remaining, reset."""
        self._expire_if_due()
        return self.store.read_sync(funding.fund_status, scope, agent, policy)

    def fund_totals(self, scope: str, agent: str | None = None) -> tuple[Decimal, Decimal]:
        """(committed, reserved) funding from CryptoConnect wallets (never part of the spend totals)."""
        return self.store.read_sync(funding.fund_totals, scope, agent)

    def known_agents(self) -> list[str]:
        return self.store.read_sync(reports.known_agents)

    def daily_spend(self, scope: str, days: int, agent: str | None = None) -> list[tuple[str, Decimal]]:
        """Committed spend per calendar day for the last ``days`` days up to today (UTC), oldest first."""
        return self.store.read_sync(reports.daily_spend, scope, days, agent)
