"""The funding window: how much an agent may move from CryptoConnect wallets into the Infinity account a day.

Funding brings money in, so it is not spend and never counts in the spend windows; it is governed by its
own daily window (policy ``fund_daily``), checked and reserved in the same transaction as the request
record, exactly like a spend window. Its entries are rows of ``spend_entries`` with ``kind = 'fund'``, so
a request's entry commits and releases the way every other does (:func:`~._reservations.settle_entry`);
its running total is the ``spend_totals`` row of window :data:`~._windows.FUND_WINDOW`. Amounts are kept
in USD (:data:`FUND_CURRENCY`): USDC and USDT arrive 1:1, and both count against the one limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from interlace_mcp.money import format_amount, from_minor, to_minor
from interlace_mcp.policy._policy import AgentPolicy
from interlace_mcp.policy._reservations import totals
from interlace_mcp.policy._rules import fund_violation
from interlace_mcp.policy._store import Reader, Tx
from interlace_mcp.policy._values import RequestKey, Violation
from interlace_mcp.policy._windows import FUND_WINDOW, iso_utc, window_keys

__all__ = [
    "FUND_CURRENCY",
    "FundStatus",
    "fund_status",
    "fund_totals",
    "fund_violations",
    "held_fund_violations",
    "reserve_fund",
]

#: What arrives in the Infinity account (stablecoins convert 1:1): the funding window's currency.
FUND_CURRENCY = "USD"


@dataclass(frozen=True)
class FundStatus:
    """The agent's funding window today: limit (None = no limit), funded, reserved, remaining, reset."""

    limit: Decimal | None
    funded: Decimal
    reserved: Decimal
    remaining: Decimal | None
    resets_at: str | None

    def as_dict(self) -> dict[str, Any]:
        def amount(value: Decimal | None) -> str | None:
            return None if value is None else format_amount(value)

        return {
            "window": FUND_WINDOW,
            "limit": amount(self.limit),
            "funded": amount(self.funded),
            "reserved": amount(self.reserved),
            "remaining": amount(self.remaining),
            "resets_at": self.resets_at,
        }


def fund_violations(rx: Reader, key: RequestKey, policy: AgentPolicy, amount: Decimal, now: float) -> list[Violation]:
    """``fund_daily``, when ``amount`` more would push today's funding past it."""
    return held_fund_violations(rx, key, policy, None, amount, now)


def held_fund_violations(
    rx: Reader, key: RequestKey, policy: AgentPolicy, entry_id: int | None, amount: Decimal, now: float
) -> list[Violation]:
    """``fund_daily`` under the CURRENT policy for an already-reserved funding request (an approved one about
    to execute), its own reservation not counted twice."""
    if amount <= 0 or policy.fund_daily is None:
        return []
    keys = window_keys(now, policy.zone)
    own = rx.one("SELECT * FROM spend_entries WHERE id = ?", (entry_id,)) if entry_id is not None else None
    mine = (
        int(own["amount_minor"]) if own is not None and own["state"] == "reserved" and own["day_key"] == keys.day else 0
    )
    reserved, committed = totals(rx, key.scope, key.agent, FUND_CURRENCY, FUND_WINDOW, keys.day)
    others = max(reserved - mine, 0)
    if committed + others + to_minor(amount) <= to_minor(policy.fund_daily):
        return []
    return [
        fund_violation(
            policy.fund_daily,
            FUND_CURRENCY,
            committed_minor=committed,
            reserved_minor=others,
            requested=amount,
            resets=iso_utc(keys.resets["day"]),
        )
    ]


def reserve_fund(tx: Tx, key: RequestKey, amount: Decimal, policy: AgentPolicy, now: float) -> int:
    """Hold ``amount`` in today's funding window (a ``fund`` entry); returns the entry's id."""
    keys = window_keys(now, policy.zone)
    minor = to_minor(amount)
    entry_id = tx.insert_id(
        "INSERT INTO spend_entries (scope, agent, currency, amount_minor, state, tool, request_id, day_key,"
        " week_key, month_key, created_at, updated_at, kind)"
        " VALUES (?, ?, ?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?, 'fund')",
        (key.scope, key.agent, FUND_CURRENCY, minor, key.tool, key.request_id, keys.day, keys.week, keys.month,
         now, now),
    )  # fmt: skip
    tx.execute(
        'INSERT INTO spend_totals (scope, agent, currency, "window", window_key, reserved_minor,'
        ' committed_minor) VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (scope, agent, currency, "window",'
        " window_key) DO UPDATE SET reserved_minor = spend_totals.reserved_minor + excluded.reserved_minor",
        (key.scope, key.agent, FUND_CURRENCY, FUND_WINDOW, keys.day, minor),
    )
    return int(entry_id)


def fund_status(rx: Reader, scope: str, agent: str, policy: AgentPolicy) -> FundStatus:
    """Today's funding window of ``agent`` (in its policy timezone)."""
    keys = window_keys(rx.now(), policy.zone)
    reserved, committed = totals(rx, scope, agent, FUND_CURRENCY, FUND_WINDOW, keys.day)
    limit = policy.fund_daily
    remaining = None if limit is None else max(limit - from_minor(reserved + committed), Decimal("0.00"))
    return FundStatus(
        limit=limit,
        funded=from_minor(committed),
        reserved=from_minor(reserved),
        remaining=remaining,
        resets_at=iso_utc(keys.resets["day"]),
    )


def fund_totals(rx: Reader, scope: str, agent: str | None = None) -> tuple[Decimal, Decimal]:
    """(committed, reserved) funding of one upstream, from the entries themselves (all days)."""
    sql = (
        "SELECT COALESCE(SUM(CASE WHEN state = 'committed' THEN amount_minor ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN state = 'reserved' THEN amount_minor ELSE 0 END), 0)"
        " FROM spend_entries WHERE scope = ? AND kind = 'fund'"
    )
    params: list[Any] = [scope]
    if agent is not None:
        sql += " AND agent = ?"
        params.append(agent)
    committed, reserved = rx.one(sql, params)
    return from_minor(int(committed)), from_minor(int(reserved))
