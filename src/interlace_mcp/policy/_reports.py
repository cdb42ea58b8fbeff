"""What the ledger says, for people: window status, totals, the agents it knows, spend per day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from interlace_mcp.money import from_minor
from interlace_mcp.policy._policy import AgentPolicy
from interlace_mcp.policy._reservations import totals
from interlace_mcp.policy._store import Reader
from interlace_mcp.policy._values import WindowStatus
from interlace_mcp.policy._windows import WINDOWS, iso_utc, window_keys

__all__ = ["committed_total", "daily_spend", "known_agents", "reserved_total", "window_status"]


def window_status(rx: Reader, scope: str, agent: str, policy: AgentPolicy) -> list[WindowStatus]:
    """Limit, spent, reserved, remaining and reset time per window (``transaction`` first)."""
    keys = window_keys(rx.now(), policy.zone)
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
    for window in WINDOWS:
        reserved, committed = totals(rx, scope, agent, policy.currency, window, keys.key(window))
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


def _entries_total(rx: Reader, state: str, scope: str, agent: str | None) -> Decimal:
    sql = "SELECT COALESCE(SUM(amount_minor), 0) FROM spend_entries WHERE scope = ? AND state = ? AND kind = 'spend'"
    params: list[Any] = [scope, state]
    if agent is not None:
        sql += " AND agent = ?"
        params.append(agent)
    return from_minor(int(rx.one(sql, params)[0]))


def committed_total(rx: Reader, scope: str, agent: str | None = None) -> Decimal:
    """Sum of committed spend (all windows' ground truth: the entries themselves)."""
    return _entries_total(rx, "committed", scope, agent)


def reserved_total(rx: Reader, scope: str, agent: str | None = None) -> Decimal:
    return _entries_total(rx, "reserved", scope, agent)


def known_agents(rx: Reader) -> list[str]:
    """Agents the ledger has seen (not the operators' own requests, whose names start with ``@``)."""
    rows = rx.all(
        "SELECT agent FROM spend_entries UNION SELECT agent FROM cards UNION SELECT agent FROM agent_flags"
        " UNION SELECT agent FROM requests ORDER BY 1"
    )
    return [row[0] for row in rows if not str(row[0]).startswith("@")]


def daily_spend(rx: Reader, scope: str, days: int, agent: str | None = None) -> list[tuple[str, Decimal]]:
    """Committed spend per calendar day (the entries' ``day_key``, in each agent's policy timezone) for the
    last ``days`` days up to today (UTC), oldest first; days without spend are 0.00."""
    if days <= 0:
        return []
    today = datetime.fromtimestamp(rx.now(), tz=UTC).date()
    first = today - timedelta(days=days - 1)
    sql = (
        "SELECT day_key, COALESCE(SUM(amount_minor), 0) FROM spend_entries"
        " WHERE scope = ? AND state = 'committed' AND kind = 'spend' AND day_key >= ?"
    )
    params: list[Any] = [scope, first.isoformat()]
    if agent is not None:
        sql += " AND agent = ?"
        params.append(agent)
    rows = rx.all(sql + " GROUP BY day_key ORDER BY day_key", params)
    totals_by_day = {str(r[0]): int(r[1]) for r in rows}
    # An agent east of UTC may already be on tomorrow's key: extend the range rather than drop it.
    last = max([today, *(date.fromisoformat(k) for k in totals_by_day)])
    span = (last - first).days + 1
    keys = [(first + timedelta(days=i)).isoformat() for i in range(span)]
    return [(k, from_minor(totals_by_day.get(k, 0))) for k in keys[-days:]]
