"""Card ownership (which agent each card belongs to, who froze it) and the per-agent kill switch."""

from __future__ import annotations

from interlace_mcp.policy._db import Row
from interlace_mcp.policy._store import Reader, Tx
from interlace_mcp.policy._values import CardRecord

__all__ = [
    "CLOSE_REASONS",
    "agent_cards",
    "all_cards",
    "claim_close",
    "clear_agent_freeze",
    "closed_by_server",
    "enforce_once",
    "enforced",
    "frozen",
    "live_cards",
    "mark_card_deleted",
    "next_expiry",
    "owned_card",
    "register_card",
    "set_agent_frozen",
    "set_card_frozen_by",
    "set_card_terms",
]

#: Why the server closes a card by itself, in words (``closed_reason`` -> sentence).
CLOSE_REASONS = {
    "single_use": "single-use card: closed by the server after its first settled purchase",
    "expired": "expired: closed by the server at its expiry time",
}


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
        single_use=bool(row["single_use"]),
        expires_at=row["expires_at"],
        last_four=row["last_four"],
        closed_reason=row["closed_reason"],
    )


def register_card(tx: Tx, scope: str, agent: str, card_id: str, *, label: str | None, request_id: str | None) -> None:
    tx.execute(
        "INSERT INTO cards (scope, card_id, agent, label, request_id, created_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (scope, card_id) DO NOTHING",
        (scope, card_id, agent, label, request_id, tx.now()),
    )


def owned_card(rx: Reader, scope: str, agent: str, card_id: str, *, include_deleted: bool = False) -> CardRecord | None:
    """The card if this agent owns it (and it is not deleted, unless asked) -- else None (same as unknown)."""
    row = rx.one(
        "SELECT * FROM cards WHERE scope = ? AND card_id = ? AND agent = ?"
        + ("" if include_deleted else " AND deleted_at IS NULL"),
        (scope, card_id, agent),
    )
    return _card(row) if row else None


def agent_cards(rx: Reader, scope: str, agent: str) -> list[CardRecord]:
    rows = rx.all(
        "SELECT * FROM cards WHERE scope = ? AND agent = ? AND deleted_at IS NULL ORDER BY created_at", (scope, agent)
    )
    return [_card(row) for row in rows]


def all_cards(rx: Reader, scope: str) -> list[CardRecord]:
    """Every card any agent was issued on this upstream, closed ones included."""
    return [_card(row) for row in rx.all("SELECT * FROM cards WHERE scope = ? ORDER BY created_at", (scope,))]


def set_card_frozen_by(tx: Tx, scope: str, card_id: str, frozen_by: str | None) -> None:
    tx.execute("UPDATE cards SET frozen_by = ? WHERE scope = ? AND card_id = ?", (frozen_by, scope, card_id))


def clear_agent_freeze(tx: Tx, scope: str, card_id: str) -> bool:
    """Forget the agent's own freeze of a card -- only while no one else (policy, an operator, reconciliation)
    has frozen it meanwhile; False when someone has (then the card is theirs to lift, not the agent's)."""
    cur = tx.execute(
        "UPDATE cards SET frozen_by = NULL WHERE scope = ? AND card_id = ? AND (frozen_by IS NULL OR frozen_by = ?)",
        (scope, card_id, "agent"),
    )
    return cur.rowcount > 0


def mark_card_deleted(tx: Tx, scope: str, card_id: str) -> None:
    tx.execute(
        "UPDATE cards SET deleted_at = COALESCE(deleted_at, ?) WHERE scope = ? AND card_id = ?",
        (tx.now(), scope, card_id),
    )


def set_agent_frozen(tx: Tx, agent: str, frozen: bool, *, by: str, reason: str | None = None) -> None:
    tx.execute(
        "INSERT INTO agent_flags (agent, frozen, reason, updated_by, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (agent) DO UPDATE SET frozen = excluded.frozen, reason = excluded.reason,"
        " updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        (agent, int(frozen), reason, by, tx.now()),
    )


def frozen(rx: Reader, agent: str) -> tuple[str | None, str | None] | None:
    """(reason, who) when the agent's kill switch is on, else None."""
    row = rx.one("SELECT reason, updated_by FROM agent_flags WHERE agent = ? AND frozen = 1", (agent,))
    return (row["reason"], row["updated_by"]) if row else None


def set_card_terms(
    tx: Tx, scope: str, card_id: str, *, single_use: bool, expires_at: float | None, last_four: str | None
) -> None:
    """What the server must do with a card by itself (single-use, expiry), and its last four digits."""
    tx.execute(
        "UPDATE cards SET single_use = ?, expires_at = ?, last_four = COALESCE(?, last_four)"
        " WHERE scope = ? AND card_id = ?",
        (int(single_use), expires_at, last_four, scope, card_id),
    )


def live_cards(rx: Reader, scope: str) -> list[CardRecord]:
    """Every card not deleted on this upstream, any agent's, oldest first."""
    rows = rx.all("SELECT * FROM cards WHERE scope = ? AND deleted_at IS NULL ORDER BY created_at", (scope,))
    return [_card(row) for row in rows]


def next_expiry(rx: Reader, scope: str) -> float | None:
    """The soonest expiry of a live card (epoch seconds), if any."""
    row = rx.one(
        "SELECT MIN(expires_at) AS soonest FROM cards"
        " WHERE scope = ? AND deleted_at IS NULL AND expires_at IS NOT NULL",
        (scope,),
    )
    return float(row["soonest"]) if row is not None and row["soonest"] is not None else None


def claim_close(tx: Tx, scope: str, card_id: str, reason: str) -> bool:
    """Mark a live card as being closed by the server for ``reason``; False when it already was (or is gone).

    The first reason wins: a card due for both (expired after its purchase settled) is closed once, for one.
    """
    cur = tx.execute(
        "UPDATE cards SET closed_reason = ? WHERE scope = ? AND card_id = ? AND closed_reason IS NULL"
        " AND deleted_at IS NULL",
        (reason, scope, card_id),
    )
    return cur.rowcount > 0


def closed_by_server(rx: Reader, scope: str, agent: str, since: float) -> list[CardRecord]:
    """This agent's cards the server closed (deleted since ``since``), newest first."""
    rows = rx.all(
        "SELECT * FROM cards WHERE scope = ? AND agent = ? AND deleted_at IS NOT NULL AND deleted_at >= ?"
        " AND closed_reason IS NOT NULL ORDER BY deleted_at DESC",
        (scope, agent, since),
    )
    return [_card(row) for row in rows]


def enforce_once(tx: Tx, scope: str, transaction_id: str, action: str, card_id: str) -> bool:
    """Claim one enforcement action for one card transaction (across instances); False when already taken."""
    cur = tx.execute(
        "INSERT INTO card_enforcement (scope, transaction_id, action, card_id, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (scope, transaction_id, action) DO NOTHING",
        (scope, transaction_id, action, card_id, tx.now()),
    )
    return cur.rowcount > 0


def enforced(rx: Reader, scope: str, transaction_ids: list[str], action: str) -> set[str]:
    """Which of these card transactions already had ``action`` taken on them."""
    if not transaction_ids:
        return set()
    marks = ",".join("?" for _ in transaction_ids)
    rows = rx.all(
        f"SELECT transaction_id FROM card_enforcement WHERE scope = ? AND action = ? AND transaction_id IN ({marks})",
        (scope, action, *transaction_ids),
    )
    return {row["transaction_id"] for row in rows}
