"""Reservations: the spend entries and the per-window running totals they keep up to date.

Checking a limit costs O(1) whatever the history: per-window running totals (``spend_totals``, one row
per agent, currency, window and calendar key) are updated in the same transaction as each entry.
Amounts are integer minor units (cents) inside; ``Decimal`` at the edges.
"""

from __future__ import annotations

import json
from decimal import Decimal

from interlace_mcp.money import from_minor, to_minor
from interlace_mcp.policy._policy import AgentPolicy
from interlace_mcp.policy._rules import cards_violation, window_violation
from interlace_mcp.policy._store import Reader, Tx
from interlace_mcp.policy._values import DayFigures, RequestKey, Violation
from interlace_mcp.policy._windows import FUND_WINDOW, WINDOWS, iso_utc, window_keys

__all__ = [
    "card_violations",
    "day_figures",
    "held_card_violations",
    "held_window_violations",
    "refuse_request",
    "reserve",
    "settle_entry",
    "totals",
    "window_violations",
]


def totals(rx: Reader, scope: str, agent: str, currency: str, window: str, wkey: str) -> tuple[int, int]:
    """(reserved, committed) minor units of one window."""
    row = rx.one(
        "SELECT reserved_minor, committed_minor FROM spend_totals"
        ' WHERE scope = ? AND agent = ? AND currency = ? AND "window" = ? AND window_key = ?',
        (scope, agent, currency, window, wkey),
    )
    return (int(row[0]), int(row[1])) if row else (0, 0)


def window_violations(
    rx: Reader, key: RequestKey, policy: AgentPolicy, spend: Decimal, currency: str, now: float
) -> list[Violation]:
    """Every calendar window that ``spend`` more would push past its limit."""
    return held_window_violations(rx, key, policy, None, spend, currency, now)


def day_figures(rx: Reader, scope: str, agent: str, policy: AgentPolicy, currency: str, now: float) -> DayFigures:
    """The agent's calendar day (in its policy's timezone): daily limit, spent and reserved so far."""
    reserved, committed = totals(rx, scope, agent, currency, "day", window_keys(now, policy.zone).day)
    return DayFigures(policy.daily, from_minor(committed), from_minor(reserved), currency)


def held_window_violations(
    rx: Reader, key: RequestKey, policy: AgentPolicy, entry_id: int | None, spend: Decimal, currency: str, now: float
) -> list[Violation]:
    """The windows (under the CURRENT policy) that an already-reserved request breaks, its own reservation
    not counted twice: an approved request is checked again just before it executes."""
    if spend <= 0:
        return []
    keys = window_keys(now, policy.zone)
    own = rx.one("SELECT * FROM spend_entries WHERE id = ?", (entry_id,)) if entry_id is not None else None
    held: dict[str, str] = {}
    mine = 0
    if own is not None and own["state"] == "reserved":
        held = {"day": own["day_key"], "week": own["week_key"], "month": own["month_key"], "lifetime": "all"}
        mine = int(own["amount_minor"])
    requested = to_minor(spend)
    out: list[Violation] = []
    for window, limit in policy.window_limits().items():
        if limit is None:
            continue
        reserved, committed = totals(rx, key.scope, key.agent, currency, window, keys.key(window))
        others = max(reserved - (mine if held.get(window) == keys.key(window) else 0), 0)
        if committed + others + requested <= to_minor(limit):
            continue
        out.append(
            window_violation(
                window,
                limit,
                currency,
                committed_minor=committed,
                reserved_minor=others,
                requested=spend,
                resets=iso_utc(keys.resets[window]),
            )
        )
    return out


def held_card_violations(rx: Reader, key: RequestKey, policy: AgentPolicy) -> list[Violation]:
    """``max_active_cards`` for an issue that is already counted as being issued (approved, about to run)."""
    if policy.max_active_cards is None:
        return []
    active, pending = rx.one(
        "SELECT (SELECT COUNT(*) FROM cards WHERE scope = ? AND agent = ? AND deleted_at IS NULL),"
        " (SELECT COUNT(*) FROM requests WHERE scope = ? AND agent = ? AND tool = ? AND card_id IS NULL"
        " AND status IN ('pending_approval', 'executing') AND request_id <> ?)",
        (key.scope, key.agent, key.scope, key.agent, key.tool, key.request_id),
    )
    if int(active) + int(pending) + 1 <= policy.max_active_cards:
        return []
    return [cards_violation(policy.max_active_cards, int(active), int(pending))]


def card_violations(rx: Reader, key: RequestKey, policy: AgentPolicy) -> list[Violation]:
    """``max_active_cards``: live cards plus issues not finished yet (pending approval or in flight)."""
    if policy.max_active_cards is None:
        return []
    # One statement, so both counts come from one snapshot (a card registered between two reads of
    # READ COMMITTED must not drop out of both).
    active, pending = rx.one(
        "SELECT (SELECT COUNT(*) FROM cards WHERE scope = ? AND agent = ? AND deleted_at IS NULL),"
        " (SELECT COUNT(*) FROM requests WHERE scope = ? AND agent = ? AND tool = ? AND card_id IS NULL"
        " AND status IN ('pending_approval', 'executing'))",
        (key.scope, key.agent, key.scope, key.agent, key.tool),
    )
    if int(active) + int(pending) + 1 <= policy.max_active_cards:
        return []
    return [cards_violation(policy.max_active_cards, int(active), int(pending))]


def reserve(tx: Tx, key: RequestKey, spend: Decimal, currency: str, policy: AgentPolicy, now: float) -> int:
    """Hold ``spend`` in every window (a new spend entry); returns the entry's id."""
    keys = window_keys(now, policy.zone)
    amount = to_minor(spend)
    entry_id = tx.insert_id(
        "INSERT INTO spend_entries (scope, agent, currency, amount_minor, state, tool, request_id, day_key,"
        " week_key, month_key, created_at, updated_at) VALUES (?, ?, ?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?)",
        (key.scope, key.agent, currency, amount, key.tool, key.request_id, keys.day, keys.week, keys.month, now, now),
    )
    tx.cur.executemany(
        'INSERT INTO spend_totals (scope, agent, currency, "window", window_key, reserved_minor,'
        ' committed_minor) VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (scope, agent, currency, "window",'
        " window_key) DO UPDATE SET reserved_minor = spend_totals.reserved_minor + excluded.reserved_minor",
        [(key.scope, key.agent, currency, window, keys.key(window), amount) for window in WINDOWS],
    )
    return int(entry_id)


def settle_entry(tx: Tx, entry_id: int, state: str, now: float) -> None:
    """``committed`` or ``released``: move the entry's amount out of ``reserved`` (idempotent)."""
    row = tx.one("SELECT * FROM spend_entries WHERE id = ?", (entry_id,))
    if row is None or row["state"] != "reserved":
        return  # already settled: settling is idempotent
    committed = row["amount_minor"] if state == "committed" else 0
    if row["kind"] == "fund":  # a funding entry (policy/_funding.py) has one window of its own
        wkeys = {FUND_WINDOW: row["day_key"]}
    else:
        wkeys = {"day": row["day_key"], "week": row["week_key"], "month": row["month_key"], "lifetime": "all"}
    tx.cur.executemany(
        "UPDATE spend_totals SET reserved_minor = reserved_minor - ?, committed_minor = committed_minor + ?"
        ' WHERE scope = ? AND agent = ? AND currency = ? AND "window" = ? AND window_key = ?',
        [
            (row["amount_minor"], committed, row["scope"], row["agent"], row["currency"], window, wkeys[window])
            for window in wkeys
        ],
    )
    tx.execute("UPDATE spend_entries SET state = ?, updated_at = ? WHERE id = ?", (state, now, entry_id))


def refuse_request(tx: Tx, key: RequestKey, code: str, text: str, now: float) -> None:
    """A request waiting for approval is refused (denied, expired): release it, store the refusal."""
    req = tx.one(
        "SELECT entry_id, status FROM requests WHERE scope = ? AND agent = ? AND tool = ? AND request_id = ?",
        (key.scope, key.agent, key.tool, key.request_id),
    )
    if req is None or req["status"] != "pending_approval":
        return
    if req["entry_id"] is not None:
        settle_entry(tx, int(req["entry_id"]), "released", now)
    tx.execute(
        "UPDATE requests SET status = 'refused', result_json = ?, lease_until = 0, updated_at = ?"
        " WHERE scope = ? AND agent = ? AND tool = ? AND request_id = ?",
        (json.dumps({"code": code, "message": text}), now, key.scope, key.agent, key.tool, key.request_id),
    )
