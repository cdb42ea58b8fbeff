"""Card ownership (which agent each card belongs to, who froze it) and the per-agent kill switch."""

from __future__ import annotations

from interlace_mcp.policy._db import Row
from interlace_mcp.policy._store import Reader, Tx
from interlace_mcp.policy._values import CardRecord

__all__ = [
    "agent_cards",
    "all_cards",
    "frozen",
    "mark_card_deleted",
    "owned_card",
    "register_card",
    "set_agent_frozen",
    "set_card_frozen_by",
]


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
